package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }

type apiKey struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	SystemAdmin bool      `json:"systemAdmin"`
	CreatedAt   time.Time `json:"createdAt"`
	Token       string    `json:"token"`
}

func (c *apiClient) apikeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "apikey", Short: "Manage API keys of your account (admins)"}
	var name, role string
	create := &cobra.Command{
		Use: "create", Short: "Create an API key; prints its token (shown once)", Args: cobra.NoArgs,
		Example: "  corral apikey create --name ci --role operator",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var k apiKey
			raw, err := c.do(cmd, "POST", "/v1/apikeys", map[string]any{"name": name, "role": role}, "", true, &k)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "ID\tROLE\tTOKEN\n%s\t%s\t%s\n", k.ID, k.Role, k.Token)
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "name")
	create.Flags().StringVar(&role, "role", "readonly", "admin, operator or readonly")
	list := &cobra.Command{
		Use: "list", Short: "List API keys (never secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Keys []apiKey `json:"keys"`
			}
			raw, err := c.do(cmd, "GET", "/v1/apikeys", nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tROLE\tSYSTEM\tCREATED")
				for _, k := range res.Keys {
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\n", k.ID, k.Name, k.Role, k.SystemAdmin, short(&k.CreatedAt))
				}
			})
		},
	}
	del := &cobra.Command{
		Use: "delete KEYID", Short: "Delete an API key", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "DELETE", "/v1/apikeys/"+esc(args[0]), nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "deleted", args[0])
			return nil
		},
	}
	var newRole string
	setRole := &cobra.Command{
		Use: "set-role KEYID", Short: "Change an API key's role; its MQTT sessions close and reconnect with the new rights", Args: cobra.ExactArgs(1),
		Example: "  corral apikey set-role ck0123456789abcdef --role readonly",
		RunE: func(cmd *cobra.Command, args []string) error {
			var k apiKey
			raw, err := c.do(cmd, "PATCH", "/v1/apikeys/"+esc(args[0]), map[string]any{"role": newRole}, "", true, &k)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "ID\tNAME\tROLE\n%s\t%s\t%s\n", k.ID, k.Name, k.Role)
			})
		},
	}
	setRole.Flags().StringVar(&newRole, "role", "", "admin, operator or readonly")
	setRole.MarkFlagRequired("role")
	cmd.AddCommand(create, list, del, setRole)
	return cmd
}

func (c *apiClient) accountCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "account", Short: "Accounts (tenants)"}
	type account struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		CreatedAt time.Time `json:"createdAt"`
	}
	self := &cobra.Command{
		Use: "self", Short: "Show your account", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var a account
			raw, err := c.do(cmd, "GET", "/v1/accounts/self", nil, "", true, &a)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) { fmt.Fprintf(w, "ID\tNAME\n%s\t%s\n", a.ID, a.Name) })
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List accounts (system administrators)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Accounts []account `json:"accounts"`
			}
			raw, err := c.do(cmd, "GET", "/v1/accounts", nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tCREATED")
				for _, a := range res.Accounts {
					fmt.Fprintf(w, "%s\t%s\t%s\n", a.ID, a.Name, short(&a.CreatedAt))
				}
			})
		},
	}
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an account and its first admin key (system administrators)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res struct {
				Account account `json:"account"`
				Token   string  `json:"token"`
			}
			raw, err := c.do(cmd, "POST", "/v1/accounts", map[string]any{"name": args[0]}, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "ACCOUNT\tADMIN TOKEN (shown once)\n%s\t%s\n", res.Account.ID, res.Token)
			})
		},
	}
	cmd.AddCommand(self, list, create)
	return cmd
}

func (c *apiClient) auditCmd() *cobra.Command {
	var action, target, outcome string
	var limit int
	cmd := &cobra.Command{
		Use: "audit", Short: "Show the account's audit trail, newest first (admins)", Args: cobra.NoArgs,
		Example: "  corral audit --action registration.https --outcome refused",
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"limit": {itoa(limit)}}
			for k, v := range map[string]string{"action": action, "target": target, "outcome": outcome} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var res struct {
				Entries []struct {
					At                                     time.Time
					Actor, Action, Target, Outcome, Reason string
					Source                                 string
					Count                                  int
				} `json:"entries"`
			}
			raw, err := c.do(cmd, "GET", "/v1/audit?"+q.Encode(), nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "TIME\tACTION\tTARGET\tOUTCOME\tREASON\tSOURCE\tCOUNT")
				for _, e := range res.Entries {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", short(&e.At), e.Action, e.Target, e.Outcome, e.Reason, e.Source, max(e.Count, 1))
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&action, "action", "", "e.g. registration.https, mqtt.connect, device.secret.read")
	f.StringVar(&target, "target", "", "e.g. {productKey}/{deviceName}")
	f.StringVar(&outcome, "outcome", "", "e.g. refused, created, ok")
	f.IntVar(&limit, "limit", 100, "entries (1 to 1000)")
	return cmd
}

// registerCmd acts as a device: Alibaba dynamic registration, or
// client-driven registration with a token.
func (c *apiClient) registerCmd() *cobra.Command {
	var pk, ps, dn, token, random, cacert string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register as a device would (for testing): dynamic registration, or client-driven with --token",
		Long: `Register as a device would. With --product-secret it signs an Alibaba dynamic
registration (POST /auth/register/device); with --token it does client-driven
registration (POST /v1/register). Prints the triple the device would receive.
Both are served on the HTTPS listener only (unless the server sets
dynreg_plain_http): point --server at it and trust corral's local CA
with --cacert.`,
		Example: `  corral register --server https://localhost:8443 --cacert corral-data/tls/ca.pem --product-key a1B2c3D4e5F --product-secret S3cr3t --device-name SN-0001
  corral register --server https://localhost:8443 --cacert corral-data/tls/ca.pem --product-key a1B2c3D4e5F --device-name SN-0002 --token 7f3a…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case insecure:
				c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			case cacert != "":
				data, err := os.ReadFile(cacert)
				if err != nil {
					return fmt.Errorf("--cacert: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(data) {
					return fmt.Errorf("--cacert: %s holds no PEM certificate", cacert)
				}
				c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			}
			if token != "" {
				var res map[string]any
				raw, err := c.do(cmd, "POST", "/v1/register", map[string]any{"productKey": pk, "deviceId": dn, "token": token}, "", false, &res)
				if err != nil {
					return err
				}
				return c.show(raw, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "PRODUCTKEY\tDEVICENAME\tDEVICESECRET\tOUTCOME\n%v\t%v\t%v\t%v\n", res["productKey"], res["deviceName"], res["deviceSecret"], res["outcome"])
				})
			}
			if ps == "" {
				return fmt.Errorf("give --product-secret (dynamic registration) or --token (client-driven)")
			}
			if random == "" {
				random = fmt.Sprint(time.Now().UnixNano())
			}
			m := hmac.New(sha256.New, []byte(ps))
			m.Write([]byte("deviceName" + dn + "productKey" + pk + "random" + random))
			form := url.Values{"productKey": {pk}, "deviceName": {dn}, "random": {random}, "sign": {hex.EncodeToString(m.Sum(nil))}, "signMethod": {"hmacsha256"}}
			var res struct {
				Code int `json:"code"`
				Data struct {
					ProductKey, DeviceName, DeviceSecret string
				} `json:"data"`
				Message string `json:"message"`
			}
			raw, err := c.do(cmd, "POST", "/auth/register/device", []byte(form.Encode()), "application/x-www-form-urlencoded", false, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "PRODUCTKEY\tDEVICENAME\tDEVICESECRET\n%s\t%s\t%s\n", res.Data.ProductKey, res.Data.DeviceName, res.Data.DeviceSecret)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&pk, "product-key", "", "ProductKey (required)")
	f.StringVar(&ps, "product-secret", "", "ProductSecret: sign a dynamic registration")
	f.StringVar(&dn, "device-name", "", "DeviceName / device id (required)")
	f.StringVar(&token, "token", "", "client-driven registration token: hex(HMAC-SHA256(registration key, device id))")
	f.StringVar(&random, "random", "", "the random the signature covers (default: generated)")
	f.BoolVar(&insecure, "insecure", false, "do not verify the server certificate")
	f.StringVar(&cacert, "cacert", "", "PEM file of the CA that signed the server certificate (corral's local CA: <data-dir>/tls/ca.pem)")
	cmd.MarkFlagRequired("product-key")
	cmd.MarkFlagRequired("device-name")
	return cmd
}

type caRow struct {
	ID          string    `json:"id"`
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	Status      string    `json:"status"`
	Mode        string    `json:"mode"`
	CreatedAt   time.Time `json:"createdAt"`
	Template    struct {
		ProductKey string `json:"productKey"`
		NameFrom   string `json:"nameFrom"`
	} `json:"template"`
}

func (c *apiClient) caCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Register CA certificates for just-in-time registration (JITR) or provisioning (JITP)"}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Print the account's registration code and how to prove possession of a CA key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct{ RegistrationCode string }
			if _, err := c.do(cmd, "GET", "/v1/cas/registration-code", nil, "", true, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), `Registration code: %s

Prove you hold the CA's key by signing a verification certificate whose
Common Name is this code, then add the CA with it:

  openssl genrsa -out verify.key 2048
  openssl req -new -key verify.key -subj "/CN=%s" -out verify.csr
  openssl x509 -req -in verify.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out verify.pem
  corral ca add --cert ca.pem --verification-cert verify.pem --product-key PK --mode jitp
`, res.RegistrationCode, res.RegistrationCode)
			return nil
		},
	}
	var certFile, verFile, mode, pk, nameFrom string
	add := &cobra.Command{
		Use: "add", Short: "Register a CA certificate (with a verification certificate as proof of possession)", Args: cobra.NoArgs,
		Example: "  corral ca add --cert ca.pem --verification-cert verify.pem --product-key a1B2c3D4e5F --mode jitp",
		RunE: func(cmd *cobra.Command, _ []string) error {
			caPEM, err := os.ReadFile(certFile)
			if err != nil {
				return err
			}
			verPEM, err := os.ReadFile(verFile)
			if err != nil {
				return err
			}
			var ca caRow
			raw, err := c.do(cmd, "POST", "/v1/cas", map[string]any{"certificatePem": string(caPEM), "verificationCertificatePem": string(verPEM), "mode": mode,
				"template": map[string]any{"productKey": pk, "nameFrom": nameFrom}}, "", true, &ca)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "ID\tMODE\tPRODUCT\tSUBJECT\n%s\t%s\t%s\t%s\n", ca.ID, ca.Mode, ca.Template.ProductKey, ca.Subject)
			})
		},
	}
	f := add.Flags()
	f.StringVar(&certFile, "cert", "", "CA certificate PEM file (required)")
	f.StringVar(&verFile, "verification-cert", "", "verification certificate PEM file (required)")
	f.StringVar(&mode, "mode", "jitr", "jitr or jitp")
	f.StringVar(&pk, "product-key", "", "product the CA's devices join (required)")
	f.StringVar(&nameFrom, "name-from", "cn", "certificate field that becomes the DeviceName: cn or serial")
	for _, n := range []string{"cert", "verification-cert", "product-key"} {
		add.MarkFlagRequired(n)
	}
	list := &cobra.Command{
		Use: "list", Short: "List the account's CAs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				CAs []caRow `json:"cas"`
			}
			raw, err := c.do(cmd, "GET", "/v1/cas", nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tSTATUS\tMODE\tPRODUCT\tSUBJECT")
				for _, ca := range res.CAs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", ca.ID, ca.Status, ca.Mode, ca.Template.ProductKey, ca.Subject)
				}
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke CAID", Short: "Revoke a CA: certificates it signed no longer connect", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "POST", "/v1/cas/"+esc(args[0])+":revoke", nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "revoked", args[0])
			return nil
		},
	}
	cmd.AddCommand(verify, add, list, revoke)
	return cmd
}

func (c *apiClient) certCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Device certificates from registered CAs"}
	var status string
	list := &cobra.Command{
		Use: "list", Short: "List device certificates", Args: cobra.NoArgs,
		Example: "  corral cert list --status pending",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Certificates []struct {
					Fingerprint, CAID, ProductKey, DeviceName, Status string
				} `json:"certificates"`
			}
			raw, err := c.do(cmd, "GET", "/v1/certificates?status="+url.QueryEscape(status), nil, "", true, &res)
			if err != nil {
				return err
			}
			return c.show(raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "FINGERPRINT\tSTATUS\tDEVICE\tCA")
				for _, x := range res.Certificates {
					fmt.Fprintf(w, "%s\t%s\t%s/%s\t%s\n", x.Fingerprint, x.Status, x.ProductKey, x.DeviceName, x.CAID)
				}
			})
		},
	}
	list.Flags().StringVar(&status, "status", "", "pending, active or revoked")
	set := func(verb, summary string) *cobra.Command {
		return &cobra.Command{
			Use: verb + " FINGERPRINT", Short: summary, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := c.do(cmd, "POST", "/v1/certificates/"+esc(strings.ToLower(args[0]))+":"+verb, nil, "", true, nil); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), verb+"d", args[0])
				return nil
			},
		}
	}
	cmd.AddCommand(list, set("activate", "Activate a pending (JITR) certificate"), set("revoke", "Revoke a certificate"))
	return cmd
}
