package spec

import (
	"reflect"
	"testing"
	"time"
)

func TestCapabilityBlocks(t *testing.T) {
	cfg := load(t, map[string]string{"main.hcl": `
variable "token" {
  type      = string
  sensitive = true
  default   = "s3cret"
}

orch {
  name = "shop"
  dns {
    listen = "127.0.0.1:5353"
    zone   = "Shop.Test."
  }
  proxy {
    listen = "127.0.0.1:8080"
    tls {
      cert = "cert.pem"
      key  = "/etc/orch/key.pem"
    }
  }
  http {
    listen = "127.0.0.1:7777"
    token  = var.token
  }
  backend "etcd" {
    endpoints = ["127.0.0.1:2379", "http://127.0.0.2:2379"]
    lock_ttl  = "15s"
  }
}

daemon "api" {
  count   = 2
  command = ["/bin/api", "--port", 8080 + count.index]
  health {
    notify   = true
    watchdog = "10s"
  }
  service {
    port  = 8080 + count.index
    route = "API.localhost/v1/"
    mdns  = "_http._tcp"
    drain = "2s"
  }
  resources {
    memory_max = "256M"
    cpu_max    = 0.5
    pids_max   = 64
  }
  placement {
    node   = "web-1"
    labels = { disk = "ssd" }
    spread = true
  }
}

daemon "worker" {
  command = ["/bin/worker"]
  service {
    port = 9000
  }
}

job "migrate" {
  command = ["/bin/migrate"]
  resources {
    memory_max = 1048576
  }
}
`}, Options{})
	p := cfg.Project
	if p.DNS == nil || p.DNS.Listen != "127.0.0.1:5353" || p.DNS.Zone != "shop.test." {
		t.Errorf("dns = %+v", p.DNS)
	}
	if p.Proxy == nil || p.Proxy.TLS == nil || p.Proxy.TLS.Cert != okDir+"/cert.pem" || p.Proxy.TLS.Key != "/etc/orch/key.pem" {
		t.Errorf("proxy = %+v tls %+v", p.Proxy, p.Proxy.TLS)
	}
	if p.HTTP == nil || p.HTTP.Token != "s3cret" {
		t.Errorf("http = %+v", p.HTTP)
	}
	wantB := &Backend{Kind: "etcd", Endpoints: []string{"127.0.0.1:2379", "http://127.0.0.2:2379"}, Prefix: "/orch/shop",
		LockTTL: 15 * time.Second, DeclRange: p.Backend.DeclRange}
	if !reflect.DeepEqual(p.Backend, wantB) {
		t.Errorf("backend = %+v", p.Backend)
	}
	api1 := resource(t, cfg, "daemon.api[1]")
	wantS := &Service{Name: "api", Host: "127.0.0.1", Port: 8081, Route: &Route{Host: "api.localhost", Path: "/v1"},
		MDNS: "_http._tcp", Drain: 2 * time.Second}
	if !reflect.DeepEqual(api1.Service, wantS) {
		t.Errorf("service = %+v route %+v", api1.Service, api1.Service.Route)
	}
	if h := api1.Health; h.Kind != HealthNotify || !h.Notify || h.Watchdog != 10*time.Second {
		t.Errorf("health = %+v", h)
	}
	if got := api1.Resources; got != (Resources{MemoryMax: 256 << 20, CPUMax: 0.5, PidsMax: 64}) {
		t.Errorf("resources = %+v", got)
	}
	if pl := api1.Placement; pl == nil || pl.Node != "web-1" || pl.Labels["disk"] != "ssd" || !pl.Spread {
		t.Errorf("placement = %+v", pl)
	}
	if w := resource(t, cfg, "daemon.worker"); w.Service.Name != "worker" || w.Service.Route != nil || w.Service.Drain != DefaultDrain {
		t.Errorf("worker service = %+v", w.Service)
	}
	if m := resource(t, cfg, "job.migrate"); m.Resources.MemoryMax != 1<<20 {
		t.Errorf("job resources = %+v", m.Resources)
	}
	if got := cfg.ServiceNames(); !reflect.DeepEqual(got, []string{"api", "worker"}) {
		t.Errorf("service names = %v", got)
	}
	if cfg2 := load(t, map[string]string{"main.hcl": `daemon "a" { command = ["/bin/a"] }`}, Options{}); cfg2.Project.DNS != nil ||
		cfg2.Project.Proxy != nil || cfg2.Project.HTTP != nil || cfg2.Project.Backend != nil {
		t.Errorf("listeners on by default: %+v", cfg2.Project)
	}
}

func TestParseRoute(t *testing.T) {
	for in, want := range map[string]Route{
		"api.localhost":       {Host: "api.localhost", Path: "/"},
		"api.localhost/":      {Host: "api.localhost", Path: "/"},
		"api.localhost/v1/x/": {Host: "api.localhost", Path: "/v1/x"},
		"/static":             {Path: "/static"},
	} {
		if got, err := ParseRoute(in); err != nil || got != want {
			t.Errorf("ParseRoute(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "http://x/", "x:80/", "a..b/", "x/a?b", "x/a//b", "x/*"} {
		if _, err := ParseRoute(bad); err == nil {
			t.Errorf("ParseRoute(%q) accepted", bad)
		}
	}
}

// A value from a -var-file that does not fit its variable is reported at
// its line in that file, at the element at fault.
func TestVarFileValueReportedInItsFile(t *testing.T) {
	src := map[string]string{"main.hcl": `
variable "ports" {
  type = map(number)
}
variable "name" {
  type     = string
  nullable = false
}
`}
	_, diags := loadFiles(src, Options{VarFiles: []VarFile{{Name: "prod.orchvars", Src: []byte(
		"name = null\nports = {\n  http  = 80\n  https = \"four\"\n}\n")}}})
	got := map[string]int{}
	for _, d := range diags {
		if d.Subject == nil {
			t.Fatalf("diagnostic without a place: %s", d.Error())
		}
		if d.Subject.Filename != "prod.orchvars" {
			t.Errorf("%s reported in %s, not in the var file", d.Summary, d.Subject.Filename)
		}
		got[d.Summary] = d.Subject.Start.Line
	}
	if got["Invalid value for variable"] != 4 || got["Null value for non-nullable variable"] != 1 || len(got) != 2 {
		t.Errorf("diagnostics at %v; want the https entry (line 4) and name (line 1):\n%s", got, renderDiags(diags))
	}
}
