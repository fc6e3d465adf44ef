package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// shadowCmd is `corral shadow …`: devices' shadows over the REST API.
func (c *apiClient) shadowCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "shadow", Short: "Read and change device shadows (desired and reported state)"}
	var name string
	path := func(pk, dn string) string {
		p := "/v1/products/" + esc(pk) + "/devices/" + esc(dn) + "/shadows"
		if name != "" {
			p += "/" + esc(name)
		}
		return p
	}
	nameFlag := func(cc *cobra.Command) {
		cc.Flags().StringVar(&name, "name", "", "a named shadow (default: the classic shadow)")
	}
	// pretty prints a JSON answer indented.
	pretty := func(raw []byte) error {
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return err
		}
		_, err := fmt.Fprintln(c.out, b.String())
		return err
	}

	var since int64
	get := &cobra.Command{
		Use: "get PRODUCTKEY DEVICENAME", Short: "Print a shadow (state with delta, metadata, version)",
		Example: "  corral shadow get a1B2c3D4e5F therm-01\n  corral shadow get a1B2c3D4e5F therm-01 --name config --since 12",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := path(args[0], args[1])
			if cmd.Flags().Changed("since") {
				p += "?since=" + strconv.FormatInt(since, 10)
			}
			raw, err := c.do(cmd, "GET", p, nil, "", true, nil)
			if err != nil {
				return err
			}
			return pretty(raw)
		},
	}
	nameFlag(get)
	get.Flags().Int64Var(&since, "since", 0, "print only what changed since this version (the whole shadow when it is older than the history kept)")

	var desired, reported, file, token string
	var version int64
	update := &cobra.Command{
		Use:   "update PRODUCTKEY DEVICENAME",
		Short: "Update a shadow (creating it): set desired and/or reported state",
		Long: `Update a shadow with an AWS update request: --desired and --reported take JSON
objects (a null leaf deletes it; 'null' removes the section), or --file gives the
whole request ({"state":{…},"clientToken":…,"version":…}; - reads stdin). An online
device is told at once (the delta, or Alibaba's control push).`,
		Example: `  corral shadow update a1B2c3D4e5F therm-01 --desired '{"target":21.5}'
  corral shadow update a1B2c3D4e5F therm-01 --name config --reported '{"mode":"eco"}' --version 4
  corral shadow update a1B2c3D4e5F therm-01 --file request.json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body []byte
			switch {
			case file != "" && (desired != "" || reported != ""):
				return fmt.Errorf("give --file or --desired/--reported, not both")
			case file != "":
				var err error
				if file == "-" {
					body, err = io.ReadAll(cmd.InOrStdin())
				} else {
					body, err = os.ReadFile(file)
				}
				if err != nil {
					return err
				}
			case desired == "" && reported == "":
				return fmt.Errorf("nothing to update: give --desired, --reported or --file")
			default:
				state := map[string]json.RawMessage{}
				for flag, v := range map[string]string{"desired": desired, "reported": reported} {
					if v == "" {
						continue
					}
					if !json.Valid([]byte(v)) {
						return fmt.Errorf("--%s is not valid JSON", flag)
					}
					state[flag] = json.RawMessage(v)
				}
				req := map[string]any{"state": state}
				if token != "" {
					req["clientToken"] = token
				}
				if cmd.Flags().Changed("version") {
					req["version"] = version
				}
				body, _ = json.Marshal(req)
			}
			raw, err := c.do(cmd, "PUT", path(args[0], args[1]), body, "application/json", true, nil)
			if err != nil {
				return err
			}
			return pretty(raw)
		},
	}
	nameFlag(update)
	update.Flags().StringVar(&desired, "desired", "", "desired state, a JSON object")
	update.Flags().StringVar(&reported, "reported", "", "reported state, a JSON object")
	update.Flags().StringVar(&file, "file", "", "the whole update request from a file (- for stdin)")
	update.Flags().StringVar(&token, "client-token", "", "clientToken echoed in the answer")
	update.Flags().Int64Var(&version, "version", 0, "apply only if the shadow is at this version (409 otherwise)")

	del := &cobra.Command{
		Use: "delete PRODUCTKEY DEVICENAME", Short: "Delete a shadow (recreated within 48 h, it continues its version)",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct{ Version int64 }
			raw, err := c.do(cmd, "DELETE", path(args[0], args[1]), nil, "", true, &out)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { fmt.Fprintf(w, "deleted at version %d\n", out.Version) })
		},
	}
	nameFlag(del)

	list := &cobra.Command{
		Use: "list PRODUCTKEY DEVICENAME", Short: "List a device's named shadows",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var all []string
			next := ""
			for {
				var page struct {
					Results   []string `json:"results"`
					NextToken string   `json:"nextToken"`
				}
				p := "/v1/products/" + esc(args[0]) + "/devices/" + esc(args[1]) + "/named-shadows?pageSize=100"
				if next != "" {
					p += "&nextToken=" + url.QueryEscape(next)
				}
				if _, err := c.do(cmd, "GET", p, nil, "", true, &page); err != nil {
					return err
				}
				all = append(all, page.Results...)
				if next = page.NextToken; next == "" {
					break
				}
			}
			raw, _ := json.Marshal(map[string]any{"results": all})
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME")
				for _, n := range all {
					fmt.Fprintln(w, n)
				}
			})
		},
	}

	history := &cobra.Command{
		Use: "history PRODUCTKEY DEVICENAME", Short: "Print the last versions kept of a shadow, oldest first",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "/v1/products/" + esc(args[0]) + "/devices/" + esc(args[1]) + "/shadow-history"
			if name != "" {
				p = path(args[0], args[1]) + "/history"
			}
			var h struct {
				Versions []struct {
					Version   int64           `json:"version"`
					UpdatedAt string          `json:"updatedAt"`
					Document  json.RawMessage `json:"document"`
				} `json:"versions"`
			}
			raw, err := c.do(cmd, "GET", p, nil, "", true, &h)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "VERSION\tUPDATED\tDOCUMENT")
				for _, v := range h.Versions {
					fmt.Fprintf(w, "%d\t%s\t%s\n", v.Version, v.UpdatedAt, v.Document)
				}
			})
		},
	}
	nameFlag(history)

	var maxBytes, keep int
	var check, presence bool
	settings := &cobra.Command{
		Use:   "settings PRODUCTKEY",
		Short: "Print or change a product's shadow settings",
		Long: `Print a product's shadow settings; with flags, change those given first:
--max-state-bytes (desired + reported, 1 to 65536), --check-thing-model (check
values against the thing model), --presence (reported.connected in the classic
shadow), --history (versions kept per shadow, 0 to 100).`,
		Example: "  corral shadow settings a1B2c3D4e5F --max-state-bytes 16384 --history 20",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "/v1/products/" + esc(args[0]) + "/shadow-settings"
			patch := map[string]any{}
			fl := cmd.Flags()
			if fl.Changed("max-state-bytes") {
				patch["maxStateBytes"] = maxBytes
			}
			if fl.Changed("check-thing-model") {
				patch["checkThingModel"] = check
			}
			if fl.Changed("presence") {
				patch["presence"] = presence
			}
			if fl.Changed("history") {
				patch["history"] = keep
			}
			var raw []byte
			var err error
			var s struct {
				MaxStateBytes   int  `json:"maxStateBytes"`
				CheckThingModel bool `json:"checkThingModel"`
				Presence        bool `json:"presence"`
				History         int  `json:"history"`
			}
			if len(patch) > 0 {
				raw, err = c.do(cmd, "PUT", p, patch, "", true, &s)
			} else {
				raw, err = c.do(cmd, "GET", p, nil, "", true, &s)
			}
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "MAXSTATEBYTES\tCHECKTHINGMODEL\tPRESENCE\tHISTORY")
				fmt.Fprintf(w, "%d\t%v\t%v\t%d\n", s.MaxStateBytes, s.CheckThingModel, s.Presence, s.History)
			})
		},
	}
	settings.Flags().IntVar(&maxBytes, "max-state-bytes", 0, "size limit of desired + reported, 1 to 65536")
	settings.Flags().BoolVar(&check, "check-thing-model", false, "check desired and reported values against the thing model")
	settings.Flags().BoolVar(&presence, "presence", true, "keep reported.connected in the classic shadow")
	settings.Flags().IntVar(&keep, "history", 0, "versions kept per shadow, 0 to 100")

	cmd.AddCommand(get, update, del, list, history, settings)
	return cmd
}
