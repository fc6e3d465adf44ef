package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// deviceCertCmd binds and unbinds device certificates, proving possession
// of the certificate's key when given the key file.
func (c *apiClient) deviceCertCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Bind or unbind a device's X.509 certificate (TLS listener authentication)"}
	var certFile, keyFile string
	bind := &cobra.Command{
		Use:   "bind PRODUCTKEY DEVICENAME --cert device.pem [--key device.key]",
		Short: "Bind a certificate to a device; with --key, prove possession of its private key",
		Long: `Bind a certificate to a device. A certificate binds to one device in the
instance. One that is neither self-signed nor issued by a CA registered in your
account needs proof of possession: with --key the CLI fetches a challenge for
the device, signs it with the key (which never leaves this machine) and sends
the signature. Without the CLI: GET …/certificate/challenge, then
  printf %s "$CHALLENGE" | openssl dgst -sha256 -sign device.key | base64 -w0
(ECDSA or RSA; Ed25519: openssl pkeyutl -sign -rawin) and PUT the certificate
with "challenge" and "signature".`,
		Example: "  corral device cert bind a1B2c3D4e5F cam-01 --cert cam-01.pem --key cam-01.key",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			path := "/v1/products/" + esc(args[0]) + "/devices/" + esc(args[1]) + "/certificate"
			body := map[string]any{"certificatePem": string(certPEM)}
			if keyFile != "" {
				key, err := readSigner(keyFile)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				var ch struct {
					Challenge string `json:"challenge"`
				}
				if _, err := c.do(cmd, "GET", path+"/challenge", nil, "", true, &ch); err != nil {
					return err
				}
				sig, err := signChallenge(key, ch.Challenge)
				if err != nil {
					return err
				}
				body["challenge"], body["signature"] = ch.Challenge, sig
			}
			var d deviceRow
			raw, err := c.do(cmd, "PUT", path, body, "", true, &d)
			if err != nil {
				return err
			}
			if c.json {
				return c.show(raw, nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bound to %s/%s\n", args[0], args[1])
			return nil
		},
	}
	bind.Flags().StringVar(&certFile, "cert", "", "device certificate PEM file (required)")
	bind.Flags().StringVar(&keyFile, "key", "", "the certificate's private key PEM file: proves possession (kept local)")
	bind.MarkFlagRequired("cert")
	unbind := &cobra.Command{
		Use: "unbind PRODUCTKEY DEVICENAME", Short: "Unbind a device's certificate; a session made with it closes", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := c.do(cmd, "DELETE", "/v1/products/"+esc(args[0])+"/devices/"+esc(args[1])+"/certificate", nil, "", true, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unbound %s/%s\n", args[0], args[1])
			return nil
		},
	}
	cmd.AddCommand(bind, unbind)
	return cmd
}

// readSigner reads a PEM private key: PKCS#8, SEC 1 (EC) or PKCS#1 (RSA).
func readSigner(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	return s, nil
}

// signChallenge signs as corral checks: SHA-256 then ECDSA or RSA PKCS#1
// v1.5, or Ed25519 over the challenge itself; base64.
func signChallenge(key crypto.Signer, challenge string) (string, error) {
	var sig []byte
	var err error
	if _, ok := key.(ed25519.PrivateKey); ok {
		sig, err = key.Sign(rand.Reader, []byte(challenge), crypto.Hash(0))
	} else {
		sum := sha256.Sum256([]byte(challenge))
		sig, err = key.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("signing the challenge: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}
