package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

type instance struct {
	ID            string    `json:"instanceId"`
	AccountID     string    `json:"accountId"`
	Name          string    `json:"name"`
	Region        string    `json:"region"`
	MQTT          string    `json:"mqtt"`
	MQTTS         string    `json:"mqtts"`
	BackupIP      string    `json:"backupIp"`
	APIURL        string    `json:"apiUrl"`
	HasCredential bool      `json:"hasCredential"`
	Self          bool      `json:"self"`
	GmtCreate     time.Time `json:"gmtCreate"`
}

type provisioningRecord struct {
	ProductKey          string    `json:"productKey"`
	DeviceName          string    `json:"deviceName"`
	SourceIotInstanceID string    `json:"sourceIotInstanceId"`
	SourceRegion        string    `json:"sourceRegion"`
	TargetIotInstanceID string    `json:"targetIotInstanceId"`
	TargetRegion        string    `json:"targetRegion"`
	PolicyID            string    `json:"policyId"`
	GmtModified         time.Time `json:"gmtModified"`
}

func instanceTable(w *tabwriter.Writer, ins ...instance) {
	fmt.Fprintln(w, "ID\tNAME\tREGION\tMQTT\tMQTTS\tBACKUP IP\tSCOPE\tCREDENTIAL")
	for _, in := range ins {
		scope := "account"
		switch {
		case in.Self:
			scope = "this corral"
		case in.AccountID == "":
			scope = "system"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\n", in.ID, in.Name, in.Region, in.MQTT, in.MQTTS, in.BackupIP, scope, in.HasCredential)
	}
}

// distCmd is `corral dist`: instances and devices' provisioning records
// at a distribution centre.
func (c *apiClient) distCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dist", Short: "Device distribution: instances and provisioning records (where devices bootstrap to)"}
	cmd.AddCommand(c.distInstanceCmd(), c.distRecordCmd(), c.distJobCmd(), c.distGrantCmd())
	return cmd
}

func (c *apiClient) distInstanceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "instance", Short: "Instances devices may be sent to (admins)"}
	var in struct {
		Name, Region, MQTT, MQTTS, BackupIP, APIURL, CredentialFile string
	}
	add := &cobra.Command{
		Use: "add ID", Short: "Tell this corral of another instance", Args: cobra.ExactArgs(1),
		Example: "  corral dist instance add sg-1 --region ap-southeast-1 --mqtts sg.iot.example.com:8883 --api-url https://sg.iot.example.com:8443 --credential-file sg.key",
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"instanceId": args[0], "name": in.Name, "region": in.Region, "mqtt": in.MQTT, "mqtts": in.MQTTS,
				"backupIp": in.BackupIP, "apiUrl": in.APIURL}
			if in.CredentialFile != "" {
				b, err := os.ReadFile(in.CredentialFile)
				if err != nil {
					return fmt.Errorf("--credential-file: %w", err)
				}
				body["credential"] = strings.TrimSpace(string(b))
			}
			var got instance
			raw, err := c.do(cmd, "POST", "/v1/instances", body, "", true, &got)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { instanceTable(w, got) })
		},
	}
	f := add.Flags()
	f.StringVar(&in.Name, "name", "", "display name")
	f.StringVar(&in.Region, "region", "", "region, e.g. ap-southeast-1")
	f.StringVar(&in.MQTT, "mqtt", "", "plain MQTT host:port devices connect to")
	f.StringVar(&in.MQTTS, "mqtts", "", "MQTT over TLS host:port devices connect to")
	f.StringVar(&in.BackupIP, "backup-ip", "", "IP address devices use when the host does not resolve (< 16 characters)")
	f.StringVar(&in.APIURL, "api-url", "", "the instance's API origin, for instance-to-instance calls")
	f.StringVar(&in.CredentialFile, "credential-file", "", "file holding an API key of the other instance (stored sealed; never on the command line)")
	list := &cobra.Command{
		Use: "list", Short: "List the instances: this corral, the system ones and your account's", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Instances []instance `json:"instances"`
			}
			raw, err := c.do(cmd, "GET", "/v1/instances", nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { instanceTable(w, res.Instances...) })
		},
	}
	get := &cobra.Command{
		Use: "get ID", Short: "Show an instance", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var got instance
			raw, err := c.do(cmd, "GET", "/v1/instances/"+esc(args[0]), nil, "", true, &got)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { instanceTable(w, got) })
		},
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Forget an instance (refused while a record or policy names it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "DELETE", "/v1/instances/"+esc(args[0]), nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "deleted", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, list, get, del)
	return cmd
}

func (c *apiClient) distRecordCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "record", Short: "Devices' provisioning records: which instance or proximity policy a device bootstraps to"}
	path := func(args []string) string {
		return fmt.Sprintf("/v1/products/%s/devices/%s/provisioning", esc(args[0]), esc(args[1]))
	}
	table := func(w *tabwriter.Writer, r provisioningRecord) {
		fmt.Fprintln(w, "PRODUCTKEY\tDEVICENAME\tSOURCE\tTARGET\tPOLICY\tMODIFIED")
		fmt.Fprintf(w, "%s\t%s\t%s (%s)\t%s (%s)\t%s\t%s\n", r.ProductKey, r.DeviceName, r.SourceIotInstanceID, r.SourceRegion,
			r.TargetIotInstanceID, r.TargetRegion, r.PolicyID, short(&r.GmtModified))
	}
	var instanceID, policyID string
	set := &cobra.Command{
		Use: "set PRODUCTKEY DEVICENAME", Short: "Point a device to an instance (--instance) or a proximity policy (--policy)", Args: cobra.ExactArgs(2),
		Example: "  corral dist record set a1B2c3D4e5F meter-0001 --instance sg-1",
		RunE: func(cmd *cobra.Command, args []string) error {
			var r provisioningRecord
			raw, err := c.do(cmd, "PUT", path(args), map[string]any{"targetIotInstanceId": instanceID, "policyId": policyID}, "", true, &r)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { table(w, r) })
		},
	}
	set.Flags().StringVar(&instanceID, "instance", "", "instance id")
	set.Flags().StringVar(&policyID, "policy", "", "proximity policy id")
	get := &cobra.Command{
		Use: "get PRODUCTKEY DEVICENAME", Short: "Show a device's record (QueryDeviceProvisioning)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r provisioningRecord
			raw, err := c.do(cmd, "GET", path(args), nil, "", true, &r)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { table(w, r) })
		},
	}
	del := &cobra.Command{
		Use: "delete PRODUCTKEY DEVICENAME", Short: "Delete a device's record: it bootstraps to the default instance", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "DELETE", path(args), nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "deleted the record of", args[0]+"/"+args[1])
			return nil
		},
	}
	cmd.AddCommand(set, get, del)
	return cmd
}
