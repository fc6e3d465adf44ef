package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/corral-iot/corral/internal/config"
	"github.com/corral-iot/corral/internal/credential"
	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/distribution/jobs"
	"github.com/corral-iot/corral/internal/distribution/transit"
	"github.com/corral-iot/corral/internal/registry"
	"github.com/corral-iot/corral/internal/webhook"
)

// newDistribution builds the distribution centre: this corral as an
// instance (its endpoints those devices are handed), the GeoIP database,
// and the instances of distribution_file as system instances.
func (a *App) newDistribution(ctx context.Context, cfg config.Config, box *credential.Box, kek []byte, hooks webhook.Policy, eps map[string]string) error {
	self := distribution.Instance{ID: cfg.InstanceID, Name: cfg.InstanceName, Region: cfg.Region,
		MQTT: deviceEndpoint(eps["mqtt"], cfg.TLSHosts), MQTTS: deviceEndpoint(eps["mqtts"], cfg.TLSHosts)}
	o := distribution.Options{Store: a.store, Sealer: box, Products: a.reg, Self: self, Default: cfg.BootstrapDefaultInstance,
		Allocator: a.hooks, CheckURL: hooks.CheckURL, RatePerIP: cfg.BootstrapRatePerIP, Auditor: a.connAudit, Logger: a.log}
	if cfg.GeoIPDB != "" {
		g, err := distribution.OpenGeoIP(cfg.GeoIPDB)
		if err != nil {
			return fmt.Errorf("geoip_db: %w", err)
		}
		a.geo, o.Geo = g, g
	}
	d, err := distribution.New(o)
	if err != nil {
		return err
	}
	if self.MQTT == "" && self.MQTTS == "" && (cfg.BootstrapDefaultInstance == "" || cfg.BootstrapDefaultInstance == cfg.InstanceID) {
		a.log.Warn("no MQTT listener to hand devices: bootstraps of devices without a record fail until bootstrap_default_instance names another instance or public_mqtt(s)_endpoint is set")
	}
	a.dist = d
	// Jobs move devices from here; the transit key (derived from the KEK,
	// so stable across restarts) opens the secrets of devices moved here.
	a.notifier = jobs.NewNotifier(a.mqtt, 5*time.Second)
	events := jobs.BrokerEvents{Publisher: a.mqtt, Webhooks: a.hooks, Products: a.reg, Now: func() int64 { return time.Now().UnixMilli() }}
	remote := jobs.HTTPRemote{Directory: d, Credentials: d, Client: jobs.NewHTTPClient(2 * jobs.DefaultWorkers)}
	var records jobs.Records = d.RecordStore() // writes drop the bootstraps' cached record
	if c := cfg.DistributionCentreInstance; c != "" && c != cfg.InstanceID {
		records = jobs.HTTPRecords{Remote: remote, Centre: c}
	}
	a.jobs = jobs.New(jobs.Options{Store: a.store, Source: jobs.RegistrySource{Registry: a.reg}, Remote: remote,
		Directory: d, Records: records, Devices: a.notifier, Events: events, Auditor: a.audit, Self: self, Logger: a.log})
	tk, err := transit.ParseKey(subkey(kek, "corral: distribution transit key"))
	if err != nil {
		return err
	}
	a.imports = jobs.Destination{Registry: a.reg, Self: cfg.InstanceID, Key: tk, Codes: jobs.NewCodes(a.store, nil)}
	if cfg.DistributionFile != "" {
		if err := a.loadInstances(ctx, cfg.DistributionFile); err != nil {
			return fmt.Errorf("distribution_file: %w", err)
		}
	}
	if c := cfg.DistributionCentreInstance; c != "" && c != cfg.InstanceID {
		if inst, err := d.GetInstance(ctx, registry.Principal{}, c); err != nil || inst.APIURL == "" {
			return fmt.Errorf("distribution_centre_instance %s: %w: not a system instance with an apiUrl (add it in distribution_file)", c, config.ErrInvalid)
		}
	}
	if cfg.BootstrapDefaultInstance != "" && cfg.BootstrapDefaultInstance != cfg.InstanceID {
		if _, err := d.GetInstance(ctx, registry.Principal{}, cfg.BootstrapDefaultInstance); err != nil {
			return fmt.Errorf("bootstrap_default_instance %s: %w: not this corral nor a system instance (add it in distribution_file)", cfg.BootstrapDefaultInstance, config.ErrInvalid)
		}
	}
	return nil
}

// distributionFile is the YAML of distribution_file.
type distributionFile struct {
	Instances []struct {
		ID         string `yaml:"instanceId"`
		Name       string `yaml:"name"`
		Region     string `yaml:"region"`
		MQTT       string `yaml:"mqtt"`
		MQTTS      string `yaml:"mqtts"`
		BackupIP   string `yaml:"backupIp"`
		APIURL     string `yaml:"apiUrl"`
		Credential string `yaml:"credential"`
	} `yaml:"instances"`
}

// loadInstances writes the file's instances as system instances, each
// replacing one of the same id.
func (a *App) loadInstances(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var f distributionFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w: %v", path, config.ErrInvalid, err)
	}
	system := registry.Principal{SystemAdmin: true}
	for i, in := range f.Instances {
		if _, err := a.dist.PutInstance(ctx, system, distribution.InstanceInput{ID: in.ID, Name: in.Name, Region: in.Region, MQTT: in.MQTT,
			MQTTS: in.MQTTS, BackupIP: in.BackupIP, APIURL: in.APIURL, Credential: in.Credential}, true); err != nil {
			return fmt.Errorf("%s: instances[%d]: %w", path, i, err)
		}
	}
	a.log.Info("loaded instances", "file", path, "instances", len(f.Instances))
	return nil
}

// deviceEndpoint is the host:port of an endpoint URL (tcp://h:p) as
// devices reach it: a listener on every address is named by the first of
// tls_hosts, else localhost.
func deviceEndpoint(raw, tlsHosts string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	host, port := u.Hostname(), u.Port()
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
		for _, h := range strings.Split(tlsHosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				host = h
				break
			}
		}
	}
	return net.JoinHostPort(host, port)
}
