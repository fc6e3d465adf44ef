package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// topicClass is a product's custom topic class as the API shows it.
type topicClass struct {
	Suffix      string `json:"suffix"`
	Operation   string `json:"operation"`
	Description string `json:"description,omitempty"`
	Template    string `json:"template,omitempty"`
}

type topicClassList struct {
	ProductKey   string       `json:"productKey"`
	TopicClasses []topicClass `json:"topicClasses"`
}

func classesPath(pk string) string { return "/v1/products/" + esc(pk) + "/topic-classes" }

// showClasses prints a product's classes in the order they are matched.
func (c *apiClient) showClasses(raw []byte, l topicClassList) error {
	return c.show(raw, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "SUFFIX\tOPERATION\tTOPIC\tDESCRIPTION")
		for _, tc := range l.TopicClasses {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", tc.Suffix, tc.Operation, tc.Template, tc.Description)
		}
	})
}

// parseClassFlag reads OP:SUFFIX[:DESCRIPTION], e.g. sub:cmd/+:commands.
func parseClassFlag(s string) (topicClass, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return topicClass{}, fmt.Errorf("--class %q: want OPERATION:SUFFIX[:DESCRIPTION], e.g. sub:cmd/+:commands", s)
	}
	tc := topicClass{Operation: parts[0], Suffix: parts[1]}
	if len(parts) == 3 {
		tc.Description = parts[2]
	}
	return tc, nil
}

// readClassFile reads a JSON list of classes, bare or as {"topicClasses": [...]}.
func readClassFile(path string) ([]topicClass, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list []topicClass
	if err := json.Unmarshal(data, &list); err == nil {
		return list, nil
	}
	var wrapped struct {
		TopicClasses []topicClass `json:"topicClasses"`
	}
	if err := json.Unmarshal(data, &wrapped); err != nil || wrapped.TopicClasses == nil {
		return nil, fmt.Errorf("%s: want a JSON list of {suffix, operation, description} or {\"topicClasses\": [...]}", path)
	}
	return wrapped.TopicClasses, nil
}

func (c *apiClient) topicCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Manage a product's custom topic classes (/{productKey}/${deviceName}/user/{suffix}: pub, sub or all for the device)",
		Long: `A product's custom topic classes say which /{productKey}/${deviceName}/user/... topics its devices
may publish (pub), subscribe to (sub) or both (all). A suffix may hold MQTT wildcards as whole
segments: + for one level, # (last) for the rest. The first class matching a topic decides.`,
	}
	list := &cobra.Command{
		Use: "list PRODUCTKEY", Short: "List the product's topic classes in the order they are matched", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var l topicClassList
			raw, err := c.do(cmd, "GET", classesPath(args[0]), nil, "", true, &l)
			if err != nil {
				return err
			}
			return c.showClasses(raw, l)
		},
	}

	var add topicClass
	addCmd := &cobra.Command{
		Use:     "add PRODUCTKEY --suffix SUFFIX --op pub|sub|all",
		Short:   "Add a topic class (ahead of any class that would hide it, such as a catch-all #)",
		Example: `  corral product topic add a1B2c3D4e5F --suffix cmd/+ --op sub --desc "commands"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var l topicClassList
			raw, err := c.do(cmd, "POST", classesPath(args[0]), add, "", true, &l)
			if err != nil {
				return err
			}
			return c.showClasses(raw, l)
		},
	}
	addCmd.Flags().StringVar(&add.Suffix, "suffix", "", "what follows /{productKey}/${deviceName}/user/, e.g. cmd/+ (required)")
	addCmd.Flags().StringVar(&add.Operation, "op", "", "pub (the device publishes), sub (the device subscribes) or all (required)")
	addCmd.Flags().StringVar(&add.Description, "desc", "", "description (up to 100 characters)")
	addCmd.MarkFlagRequired("suffix")
	addCmd.MarkFlagRequired("op")

	del := &cobra.Command{
		Use: "delete PRODUCTKEY SUFFIX", Short: "Delete a topic class by its suffix",
		Example: "  corral product topic delete a1B2c3D4e5F cmd/+\n  corral product topic delete a1B2c3D4e5F '#'",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "DELETE", classesPath(args[0])+"/"+esc(args[1]), nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted topic class %s of %s\n", args[1], args[0])
			return nil
		},
	}

	var classes []string
	var file string
	var none bool
	set := &cobra.Command{
		Use:   "set PRODUCTKEY (--class OP:SUFFIX[:DESCRIPTION]... | --file classes.json | --none)",
		Short: "Replace all the product's topic classes, in the order given",
		Example: `  corral product topic set a1B2c3D4e5F --class pub:update --class sub:get --class sub:cmd/+:commands
  corral product topic set a1B2c3D4e5F --file classes.json
  corral product topic set a1B2c3D4e5F --none`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			given := 0
			for _, b := range []bool{len(classes) > 0, file != "", none} {
				if b {
					given++
				}
			}
			if given != 1 {
				return fmt.Errorf("give one of --class (repeatable), --file or --none")
			}
			chosen := []topicClass{}
			for _, s := range classes {
				tc, err := parseClassFlag(s)
				if err != nil {
					return err
				}
				chosen = append(chosen, tc)
			}
			if file != "" {
				var err error
				if chosen, err = readClassFile(file); err != nil {
					return err
				}
			}
			var l topicClassList
			raw, err := c.do(cmd, "PUT", classesPath(args[0]), map[string]any{"topicClasses": chosen}, "", true, &l)
			if err != nil {
				return err
			}
			return c.showClasses(raw, l)
		},
	}
	set.Flags().StringArrayVar(&classes, "class", nil, "a class as OPERATION:SUFFIX[:DESCRIPTION], e.g. sub:cmd/+:commands (repeatable, in match order)")
	set.Flags().StringVar(&file, "file", "", "a JSON file: a list of {suffix, operation, description}")
	set.Flags().BoolVar(&none, "none", false, "leave the product no custom topic class (its devices get no /user/ topic)")

	cmd.AddCommand(list, addCmd, del, set)
	return cmd
}

// classSummary is a product's classes on one line: "pub update, sub get".
func classSummary(cs []topicClass) string {
	if len(cs) == 0 {
		return "none (no /user/ topics)"
	}
	parts := make([]string, len(cs))
	for i, tc := range cs {
		parts[i] = tc.Operation + " " + tc.Suffix
	}
	return strings.Join(parts, ", ")
}
