package main

import (
	"encoding/csv"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

type product struct {
	ProductKey          string            `json:"productKey"`
	ProductSecret       string            `json:"productSecret"`
	Name                string            `json:"name"`
	Description         string            `json:"description"`
	NodeType            string            `json:"nodeType"`
	AuthType            string            `json:"authType"`
	DynamicRegistration string            `json:"dynamicRegistration"`
	Attributes          map[string]string `json:"attributes"`
	TopicClasses        []topicClass      `json:"topicClasses"`
	CreatedAt           time.Time         `json:"createdAt"`
}

type deviceRow struct {
	ProductKey    string            `json:"productKey"`
	DeviceName    string            `json:"deviceName"`
	DeviceSecret  string            `json:"deviceSecret,omitempty"`
	IotID         string            `json:"iotId"`
	ThingName     string            `json:"thingName"`
	Nickname      string            `json:"nickname"`
	Status        string            `json:"status"`
	Attributes    map[string]string `json:"attributes"`
	SecretIssued  bool              `json:"secretIssued"`
	CreatedAt     *time.Time        `json:"createdAt"`
	FirstOnlineAt *time.Time        `json:"firstOnlineAt"`
	LastOnlineAt  *time.Time        `json:"lastOnlineAt"`
	Gateway       string            `json:"gateway"`
}

func (c *apiClient) productCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "product", Short: "Manage products (kinds of device sharing a ProductKey)"}
	var in struct {
		name, desc, node, auth, dynreg string
		attrs, classes                 []string
		noClasses                      bool
	}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a product; prints its ProductKey and ProductSecret (shown once)",
		Example: `  corral product create --name thermostat
  corral product create --name meter --dynamic-registration auto
  corral product create --name hub --node-type gateway
  corral product create --name lamp --class pub:update --class sub:cmd/+:commands`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			attrs, err := attrsFlag(in.attrs)
			if err != nil {
				return err
			}
			body := map[string]any{"name": in.name, "description": in.desc, "nodeType": in.node, "authType": in.auth, "dynamicRegistration": in.dynreg, "attributes": attrs}
			if in.noClasses || len(in.classes) > 0 {
				if in.noClasses && len(in.classes) > 0 {
					return fmt.Errorf("give --class or --no-topic-classes, not both")
				}
				classes := []topicClass{}
				for _, s := range in.classes {
					tc, err := parseClassFlag(s)
					if err != nil {
						return err
					}
					classes = append(classes, tc)
				}
				body["topicClasses"] = classes
			}
			var p product
			raw, err := c.do(cmd, "POST", "/v1/products", body, "", true, &p)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "PRODUCTKEY\tPRODUCTSECRET\tNAME\tNODE\tDYNREG\n%s\t%s\t%s\t%s\t%s\n", p.ProductKey, p.ProductSecret, p.Name, p.NodeType, p.DynamicRegistration)
			})
		},
	}
	f := create.Flags()
	f.StringVar(&in.name, "name", "", "product name (required)")
	f.StringVar(&in.desc, "description", "", "description")
	f.StringVar(&in.node, "node-type", "", "direct (default), gateway or subdevice")
	f.StringVar(&in.auth, "auth-type", "", "secret (default) or x509")
	f.StringVar(&in.dynreg, "dynamic-registration", "", "off (default), whitelist or auto")
	f.StringArrayVar(&in.attrs, "attr", nil, "attribute key=value (repeatable)")
	f.StringArrayVar(&in.classes, "class", nil, "a custom topic class as OPERATION:SUFFIX[:DESCRIPTION], e.g. sub:cmd/+ (repeatable; default: pub update, pub update/error, sub get)")
	f.BoolVar(&in.noClasses, "no-topic-classes", false, "start with no custom topic class (no /user/ topics)")
	create.MarkFlagRequired("name")

	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List products",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var all []product
			cursor := ""
			for {
				var page struct {
					Products   []product `json:"products"`
					NextCursor string    `json:"nextCursor"`
				}
				q := url.Values{"limit": {"1000"}, "cursor": {cursor}}
				if _, err := c.do(cmd, "GET", "/v1/products?"+q.Encode(), nil, "", true, &page); err != nil {
					return err
				}
				all = append(all, page.Products...)
				if page.NextCursor == "" || limit > 0 && len(all) >= limit {
					break
				}
				cursor = page.NextCursor
			}
			if limit > 0 && len(all) > limit {
				all = all[:limit]
			}
			raw, _ := jsonBytes(map[string]any{"products": all})
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "PRODUCTKEY\tNAME\tNODE\tAUTH\tDYNREG\tCREATED")
				for _, p := range all {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", p.ProductKey, p.Name, p.NodeType, p.AuthType, p.DynamicRegistration, short(&p.CreatedAt))
				}
			})
		},
	}
	list.Flags().IntVar(&limit, "limit", 0, "list at most this many (default: all)")

	get := &cobra.Command{
		Use: "get PRODUCTKEY", Short: "Show a product", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p product
			raw, err := c.do(cmd, "GET", "/v1/products/"+esc(args[0]), nil, "", true, &p)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "ProductKey:\t%s\nName:\t%s\nDescription:\t%s\nNode type:\t%s\nAuth type:\t%s\nDynamic registration:\t%s\nAttributes:\t%v\nTopic classes:\t%s\nCreated:\t%s\n",
					p.ProductKey, p.Name, p.Description, p.NodeType, p.AuthType, p.DynamicRegistration, p.Attributes, classSummary(p.TopicClasses), short(&p.CreatedAt))
			})
		},
	}
	del := &cobra.Command{
		Use: "delete PRODUCTKEY", Short: "Delete a product and all its devices", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "DELETE", "/v1/products/"+esc(args[0]), nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "deleted", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, get, del, c.topicCmd())
	return cmd
}

func (c *apiClient) deviceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Manage devices (the ProductKey/DeviceName/DeviceSecret triples)"}
	triples := func(raw []byte, ds []deviceRow) error {
		return c.show(raw, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "PRODUCTKEY\tDEVICENAME\tDEVICESECRET\tIOTID")
			for _, d := range ds {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.ProductKey, d.DeviceName, d.DeviceSecret, d.IotID)
			}
		})
	}
	var nickname, thingName string
	var attrs []string
	create := &cobra.Command{
		Use: "create PRODUCTKEY DEVICENAME", Short: "Create a device; prints its triple",
		Example: "  corral device create a1B2c3D4e5F therm-01",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := attrsFlag(attrs)
			if err != nil {
				return err
			}
			var d deviceRow
			raw, err := c.do(cmd, "POST", "/v1/products/"+esc(args[0])+"/devices", map[string]any{"deviceName": args[1], "nickname": nickname, "thingName": thingName, "attributes": a}, "", true, &d)
			if err != nil {
				return err
			}
			return triples(raw, []deviceRow{d})
		},
	}
	create.Flags().StringVar(&nickname, "nickname", "", "nickname")
	create.Flags().StringVar(&thingName, "thing-name", "", "thing name for $aws/things/… topics, unique across the instance (default {productKey}.{deviceName})")
	create.Flags().StringArrayVar(&attrs, "attr", nil, "attribute key=value (repeatable)")

	var file, outFile string
	var count int
	batch := &cobra.Command{
		Use:   "batch PRODUCTKEY (--file names.csv | --count N)",
		Short: "Create up to 10,000 devices at once, all or none",
		Long:  "Create devices from a CSV file of names (first column; an optional header 'deviceName') or with N generated names. Prints the triples; --out writes them as CSV (mode 0600).",
		Example: `  corral device batch a1B2c3D4e5F --file names.csv --out triples.csv
  corral device batch a1B2c3D4e5F --count 500`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body any
			ct := ""
			switch {
			case file != "" && count > 0:
				return fmt.Errorf("give --file or --count, not both")
			case file != "":
				data, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				body, ct = data, "text/csv"
			case count > 0:
				body = map[string]any{"count": count}
			default:
				return fmt.Errorf("give --file names.csv or --count N")
			}
			var res struct {
				Devices []deviceRow `json:"devices"`
			}
			raw, err := c.do(cmd, "POST", "/v1/products/"+esc(args[0])+"/devices:batch", body, ct, true, &res)
			if err != nil {
				return err
			}
			if outFile != "" {
				f, err := os.OpenFile(outFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				w := csv.NewWriter(f)
				w.Write([]string{"productKey", "deviceName", "deviceSecret", "iotId"})
				for _, d := range res.Devices {
					w.Write([]string{d.ProductKey, d.DeviceName, d.DeviceSecret, d.IotID})
				}
				w.Flush()
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created %d devices; triples written to %s\n", len(res.Devices), outFile)
				return w.Error()
			}
			return triples(raw, res.Devices)
		},
	}
	batch.Flags().StringVar(&file, "file", "", "CSV file of device names")
	batch.Flags().IntVar(&count, "count", 0, "create N devices with generated names")
	batch.Flags().StringVar(&outFile, "out", "", "write the triples to this CSV file (mode 0600)")

	var status, prefix, attr string
	var limit int
	list := &cobra.Command{
		Use: "list PRODUCTKEY", Short: "List devices (never shows secrets)",
		Example: "  corral device list a1B2c3D4e5F --status online --prefix therm-",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var all []deviceRow
			cursor := ""
			for {
				q := url.Values{"limit": {"1000"}, "cursor": {cursor}}
				for k, v := range map[string]string{"status": status, "prefix": prefix, "attribute": attr} {
					if v != "" {
						q.Set(k, v)
					}
				}
				var page struct {
					Devices    []deviceRow `json:"devices"`
					NextCursor string      `json:"nextCursor"`
				}
				if _, err := c.do(cmd, "GET", "/v1/products/"+esc(args[0])+"/devices?"+q.Encode(), nil, "", true, &page); err != nil {
					return err
				}
				all = append(all, page.Devices...)
				if page.NextCursor == "" || limit > 0 && len(all) >= limit {
					break
				}
				cursor = page.NextCursor
			}
			if limit > 0 && len(all) > limit {
				all = all[:limit]
			}
			raw, _ := jsonBytes(map[string]any{"devices": all})
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "DEVICENAME\tSTATUS\tIOTID\tNICKNAME\tLAST ONLINE")
				for _, d := range all {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.DeviceName, d.Status, d.IotID, d.Nickname, short(d.LastOnlineAt))
				}
			})
		},
	}
	list.Flags().StringVar(&status, "status", "", "inactive, online, offline or disabled")
	list.Flags().StringVar(&prefix, "prefix", "", "DeviceName prefix")
	list.Flags().StringVar(&attr, "attr", "", "attribute key=value")
	list.Flags().IntVar(&limit, "limit", 0, "list at most this many (default: all)")

	one := func(use, summary, method, suffix string) *cobra.Command {
		return &cobra.Command{
			Use: use + " PRODUCTKEY DEVICENAME", Short: summary, Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				var d deviceRow
				raw, err := c.do(cmd, method, "/v1/products/"+esc(args[0])+"/devices/"+esc(args[1])+suffix, nil, "", true, &d)
				if err != nil {
					return err
				}
				if method == "DELETE" {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted %s/%s\n", args[0], args[1])
					return nil
				}
				return c.show(raw, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "ProductKey:\t%s\nDeviceName:\t%s\nIotId:\t%s\nThing name:\t%s\nStatus:\t%s\nNickname:\t%s\nAttributes:\t%v\nSecret issued:\t%v\nGateway:\t%s\nCreated:\t%s\nFirst online:\t%s\nLast online:\t%s\n",
						d.ProductKey, d.DeviceName, d.IotID, d.ThingName, d.Status, d.Nickname, d.Attributes, d.SecretIssued, d.Gateway, short(d.CreatedAt), short(d.FirstOnlineAt), short(d.LastOnlineAt))
				})
			},
		}
	}
	secret := &cobra.Command{
		Use: "secret PRODUCTKEY DEVICENAME", Short: "Print a device's secret (admins; audited)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d deviceRow
			raw, err := c.do(cmd, "GET", "/v1/products/"+esc(args[0])+"/devices/"+esc(args[1])+"/secret", nil, "", true, &d)
			if err != nil {
				return err
			}
			return triples(raw, []deviceRow{d})
		},
	}
	rename := &cobra.Command{
		Use: "rename PRODUCTKEY DEVICENAME THINGNAME", Short: "Set a device's thing name (\"\" for the default {productKey}.{deviceName}); its live session closes",
		Example: "  corral device rename a1B2c3D4e5F therm-01 factory-7-therm", Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d deviceRow
			raw, err := c.do(cmd, "PATCH", "/v1/products/"+esc(args[0])+"/devices/"+esc(args[1]), map[string]any{"thingName": args[2]}, "", true, &d)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "PRODUCTKEY\tDEVICENAME\tTHINGNAME\n%s\t%s\t%s\n", d.ProductKey, d.DeviceName, d.ThingName)
			})
		},
	}
	cmd.AddCommand(create, batch, list, rename,
		one("get", "Show a device", "GET", ""),
		one("disable", "Disable a device; its live session closes", "POST", ":disable"),
		one("enable", "Enable a device", "POST", ":enable"),
		one("delete", "Delete a device; its live session closes", "DELETE", ""),
		secret, c.deviceCertCmd())
	return cmd
}

func itoa(n int) string { return strconv.Itoa(n) }
