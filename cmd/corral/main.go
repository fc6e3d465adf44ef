// Command corral is the corral server and the operator's CLI over its API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/corral-iot/corral/internal/app"
	"github.com/corral-iot/corral/internal/config"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "corral:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "corral",
		Short: "corral: IoT device provisioning and connectivity server",
		Long: `corral takes a device from the factory line to a live, authenticated MQTT
session: registry, dynamic registration, an embedded broker, and an API.

Run the server with 'corral serve'; every other command is a client of its API.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServe(), newVersion())
	addClientCommands(root)
	return root
}

func newServe() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the corral server",
		Long: `Run the corral server. With no flags it keeps its data in ./corral-data and
serves the API on :8080. On first start it creates an admin API key and
writes it to <data-dir>/admin.key (mode 0600).

Settings come from defaults, then the YAML file named by --config, then
CORRAL_* environment variables, then flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), os.Getenv)
			if err != nil {
				return err
			}
			log := app.NewLogger(cfg, os.Stderr)
			if cfg.CPUProfile != "" {
				stopProfile, err := startCPUProfile(cfg.CPUProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := app.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	config.BindFlags(cmd.Flags())
	return cmd
}

// startCPUProfile starts writing a CPU profile to path; the function it
// returns stops the profile, closes the file and writes the allocations
// made meanwhile (the allocs profile) to path.allocs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if a, err := os.Create(path + ".allocs"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(a, 0)
			a.Close()
		}
	}, nil
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print corral's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "corral", app.Version)
		},
	}
}

var _ = context.Background
