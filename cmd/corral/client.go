package main

import "github.com/spf13/cobra"

// addClientCommands adds the API client commands (product, device, …).
func addClientCommands(root *cobra.Command) {}
