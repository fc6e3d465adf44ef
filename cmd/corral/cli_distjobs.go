package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

type distJob struct {
	JobID            string    `json:"jobId"`
	ProductKey       string    `json:"productKey"`
	Strategy         int       `json:"strategy"`
	TargetInstanceID string    `json:"targetInstanceId"`
	PolicyID         string    `json:"policyId"`
	Status           int       `json:"status"`
	Total            int       `json:"total"`
	Moved            int       `json:"moved"`
	Failed           int       `json:"failed"`
	Progress         int       `json:"progress"`
	Message          string    `json:"message"`
	GmtCreate        time.Time `json:"gmtCreate"`
}

type distJobItem struct {
	DeviceName       string `json:"deviceName"`
	TargetInstanceID string `json:"targetInstanceId"`
	Code             int    `json:"code"`
	Message          string `json:"message"`
}

var jobStatus = []string{"initializing", "running", "done", "aborted"}

func jobTable(w *tabwriter.Writer, js ...distJob) {
	fmt.Fprintln(w, "JOB\tPRODUCTKEY\tTO\tSTATUS\tPROGRESS\tMOVED\tFAILED\tTOTAL\tCREATED")
	for _, j := range js {
		to := j.TargetInstanceID
		if j.Strategy == 1 {
			to = "policy " + j.PolicyID
		}
		st := fmt.Sprint(j.Status)
		if j.Status >= 0 && j.Status < len(jobStatus) {
			st = jobStatus[j.Status]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d%%\t%d\t%d\t%d\t%s\n", j.JobID, j.ProductKey, to, st, j.Progress, j.Moved, j.Failed, j.Total, short(&j.GmtCreate))
	}
}

func itemTable(w *tabwriter.Writer, items []distJobItem) {
	fmt.Fprintln(w, "DEVICENAME\tTO\tCODE\tMESSAGE")
	for _, it := range items {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", it.DeviceName, it.TargetInstanceID, it.Code, it.Message)
	}
}

// progressBar draws a job's progress on one terminal line.
func progressBar(w io.Writer, j distJob) {
	const width = 30
	n := j.Progress * width / 100
	fmt.Fprintf(w, "\r[%s%s] %3d%%  moved %d  failed %d  of %d", strings.Repeat("#", n), strings.Repeat(".", width-n), j.Progress, j.Moved, j.Failed, j.Total)
}

// waitJob polls a job until it finishes, drawing its progress on stderr.
func (c *apiClient) waitJob(cmd *cobra.Command, id string, every time.Duration) ([]byte, distJob, error) {
	for {
		var j distJob
		raw, err := c.do(cmd, "GET", "/v1/distribution/jobs/"+esc(id), nil, "", true, &j)
		if err != nil {
			return nil, j, err
		}
		progressBar(cmd.ErrOrStderr(), j)
		if j.Status >= 2 {
			fmt.Fprintln(cmd.ErrOrStderr())
			return raw, j, nil
		}
		select {
		case <-cmd.Context().Done():
			fmt.Fprintln(cmd.ErrOrStderr())
			return nil, j, cmd.Context().Err()
		case <-time.After(every):
		}
	}
}

func (c *apiClient) distJobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Distribution jobs: move devices of a product to other instances"}
	var in struct {
		Devices       []string
		CSV, Instance string
		Policy        string
		DryRun, Wait  bool
	}
	every := 500 * time.Millisecond
	create := &cobra.Command{
		Use: "create PRODUCTKEY", Short: "Move devices (--devices or --csv) to an instance (--instance) or by a proximity policy (--policy)", Args: cobra.ExactArgs(1),
		Example: "  corral dist job create a1B2c3D4e5F --csv devices.csv --instance sg-1 --wait\n  corral dist job create a1B2c3D4e5F --devices meter-0001,meter-0002 --policy nearest --dry-run",
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"productKey": args[0], "deviceNames": in.Devices}
			switch {
			case in.Instance != "" && in.Policy == "":
				body["strategy"], body["targetInstanceId"] = 0, in.Instance
			case in.Policy != "" && in.Instance == "":
				body["strategy"], body["policyId"] = 1, in.Policy
			default:
				return fmt.Errorf("give --instance or --policy")
			}
			if in.CSV != "" {
				b, err := os.ReadFile(in.CSV)
				if err != nil {
					return fmt.Errorf("--csv: %w", err)
				}
				body["csv"] = string(b)
			}
			if in.DryRun {
				var plan struct {
					Devices []distJobItem `json:"devices"`
				}
				raw, err := c.do(cmd, "POST", "/v1/distribution/jobs:plan", body, "", true, &plan)
				if err != nil {
					return err
				}
				return c.show(raw, func(w *tabwriter.Writer) { itemTable(w, plan.Devices) })
			}
			var j distJob
			raw, err := c.do(cmd, "POST", "/v1/distribution/jobs", body, "", true, &j)
			if err != nil {
				return err
			}
			if in.Wait {
				if raw, j, err = c.waitJob(cmd, j.JobID, every); err != nil {
					return err
				}
			}
			return c.show(raw, func(w *tabwriter.Writer) { jobTable(w, j) })
		},
	}
	f := create.Flags()
	f.StringSliceVar(&in.Devices, "devices", nil, "device names, comma-separated (up to 10,000)")
	f.StringVar(&in.CSV, "csv", "", "a CSV file of device names in its first column (up to 1,000 rows)")
	f.StringVar(&in.Instance, "instance", "", "the destination instance")
	f.StringVar(&in.Policy, "policy", "", "a proximity policy choosing each device's instance")
	f.BoolVar(&in.DryRun, "dry-run", false, "list what would move and where; create nothing")
	f.BoolVar(&in.Wait, "wait", false, "wait for the job to finish, with a progress bar")
	var wait bool
	get := &cobra.Command{
		Use: "get JOBID", Short: "Show a job (--wait: until it finishes, with a progress bar)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var j distJob
			var raw []byte
			var err error
			if wait {
				raw, j, err = c.waitJob(cmd, args[0], every)
			} else {
				raw, err = c.do(cmd, "GET", "/v1/distribution/jobs/"+esc(args[0]), nil, "", true, &j)
			}
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { jobTable(w, j) })
		},
	}
	get.Flags().BoolVar(&wait, "wait", false, "wait for the job to finish, with a progress bar")
	list := &cobra.Command{
		Use: "list", Short: "List your account's jobs, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Jobs []distJob `json:"jobs"`
			}
			raw, err := c.do(cmd, "GET", "/v1/distribution/jobs", nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { jobTable(w, res.Jobs...) })
		},
	}
	details := &cobra.Command{
		Use: "details JOBID", Short: "A job's devices and their result codes (200 moved)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			all := []distJobItem{}
			cursor := ""
			for {
				var page struct {
					Devices    []distJobItem `json:"devices"`
					NextCursor string        `json:"nextCursor"`
				}
				if _, err := c.do(cmd, "GET", "/v1/distribution/jobs/"+esc(args[0])+"/devices?limit=1000&cursor="+cursor, nil, "", true, &page); err != nil {
					return err
				}
				all = append(all, page.Devices...)
				if page.NextCursor == "" {
					break
				}
				cursor = page.NextCursor
			}
			raw, err := json.Marshal(map[string]any{"devices": all})
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { itemTable(w, all) })
		},
	}
	abort := &cobra.Command{
		Use: "abort JOBID", Short: "Abort an open job (devices already moving finish)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var j distJob
			raw, err := c.do(cmd, "POST", "/v1/distribution/jobs/"+esc(args[0])+":abort", nil, "", true, &j)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { jobTable(w, j) })
		},
	}
	del := &cobra.Command{
		Use: "delete JOBID", Short: "Delete a finished job and its results", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "DELETE", "/v1/distribution/jobs/"+esc(args[0]), nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "deleted", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, get, list, details, abort, del)
	return cmd
}

// distGrantCmd is the destination account's side of cross-account jobs:
// codes to hand to the other account, and the grants they became.
func (c *apiClient) distGrantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "grant", Short: "Cross-account distribution: let another account's jobs move devices into yours, and see or end what you allowed"}
	code := &cobra.Command{
		Use: "code", Short: "Issue an authorisation code (valid 5 minutes, once) for another account's job to move devices into this account", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				AuthCode  string    `json:"authCode"`
				AccountID string    `json:"targetUid"`
				ExpiresAt time.Time `json:"expiresAt"`
			}
			raw, err := c.do(cmd, "POST", "/v1/distribution/authorization-codes", nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "AUTHCODE\tTARGETUID\tEXPIRES")
				fmt.Fprintf(w, "%s\t%s\t%s\n", res.AuthCode, res.AccountID, res.ExpiresAt.Format(time.RFC3339))
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "The grants other accounts' jobs hold to import into this account", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Grants []struct {
					ID          string    `json:"id"`
					FromAccount string    `json:"fromAccount"`
					Created     time.Time `json:"created"`
				} `json:"grants"`
			}
			raw, err := c.do(cmd, "GET", "/v1/distribution/grants", nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tFROM ACCOUNT\tCREATED")
				for _, g := range res.Grants {
					fmt.Fprintf(w, "%s\t%s\t%s\n", g.ID, g.FromAccount, g.Created.Format(time.RFC3339))
				}
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke GRANTID", Short: "End a grant: the job holding it imports nothing more into this account", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "DELETE", "/v1/distribution/grants/"+esc(args[0]), nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "revoked", args[0])
			return nil
		},
	}
	cmd.AddCommand(code, list, revoke)
	return cmd
}
