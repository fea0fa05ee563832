package fidelity

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/reprise-dev/reprise/agent/httpstream"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// nginx without sendfile: it reads files into 1 MiB buffers and sends
// them with writev, head and body together. It serves a 5 MB file, a range
// of it (206), a 304, a gzip-encoded page, and proxies to the Go server, so
// that its inbound and its outbound side are both captured, and so is the
// Go server's.
func TestNginxWritevAndProxy(t *testing.T) {
	need(t, "nginx")
	need(t, "curl")
	port := freePort(t, "tcp4", "127.0.0.1:0")
	upstream := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	dir := staticDir(t)
	file := randomBody(5000000)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), file, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(`daemon off;
master_process off;
pid `+dir+`/nginx.pid;
error_log stderr;
events {}
http {
  access_log off;
  sendfile off;
  output_buffers 2 1m;
  gzip on;
  gzip_types text/plain;
  client_body_temp_path `+dir+`/client;
  proxy_temp_path `+dir+`/proxy;
  server {
    listen 127.0.0.1:`+strconv.Itoa(port)+`;
    root `+dir+`;
    location = /returned { default_type text/plain; return 200 "returned body"; }
    location /proxy/ { proxy_pass http://127.0.0.1:`+strconv.Itoa(upstream)+`/; }
  }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := capturePorts(t, httpstream.Config{}, port, upstream)
	start(t, "http://127.0.0.1:"+strconv.Itoa(upstream)+"/count", child("goserver 127.0.0.1:"+strconv.Itoa(upstream)))
	start(t, base+"/returned?ready", exec.Command("nginx", "-c", conf, "-e", "stderr"))

	info, err := os.Stat(filepath.Join(dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	path, upload := bodyFile(t, 400000)
	out := t.TempDir()
	o := func(name string) string { return filepath.Join(out, name) }
	// One curl, one keep-alive connection to nginx.
	run(t, "curl", "-sS",
		"-o", o("big"), base+"/big.bin",
		"--next", "-sS", "-o", o("range"), "-r", "1000-100999", base+"/big.bin?range=1",
		"--next", "-sS", "-o", "/dev/null", "-H", "If-Modified-Since: "+info.ModTime().UTC().Format(http.TimeFormat), base+"/big.bin?since=1",
		"--next", "-sS", "-o", o("gzip"), "-H", "Accept-Encoding: gzip", base+"/page.txt?gzip=1",
		"--next", "-sS", "-o", o("proxied"), base+"/proxy/one?size=1048576",
		"--next", "-sS", "-o", o("echoed"), "-H", "Expect:", "--data-binary", "@"+path, base+"/proxy/echo?via=nginx",
		"--next", "-sS", "-o", o("after"), base+"/returned?after=1")

	checkFile(t, o("big"), file)
	exact{method: "GET", target: "/big.bin", status: 200, resp: file}.check(t, h.one(inbound, "/big.bin"))
	checkFile(t, o("range"), file[1000:101000])
	x := h.one(inbound, "/big.bin?range=1")
	exact{method: "GET", target: "/big.bin?range=1", status: 206, resp: file[1000:101000]}.check(t, x)
	if got := header(x.Response.GetHeaders(), "Content-Range"); got != "bytes 1000-100999/5000000" {
		t.Errorf("Content-Range %q", got)
	}
	exact{method: "GET", target: "/big.bin?since=1", status: 304}.check(t, h.one(inbound, "/big.bin?since=1"))

	// The gzip body is kept as sent, and it is the page.
	gz, err := os.ReadFile(o("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	x = h.one(inbound, "/page.txt?gzip=1")
	exact{method: "GET", target: "/page.txt?gzip=1", status: 200, resp: gz}.check(t, x)
	if header(x.Response.GetHeaders(), "Content-Encoding") != "gzip" || header(x.Response.GetHeaders(), "Transfer-Encoding") != "chunked" {
		t.Errorf("gzip response headers %v", x.Response.GetHeaders())
	}
	if zr, err := gzip.NewReader(bytes.NewReader(x.Response.GetBody())); err != nil {
		t.Errorf("gzip body: %v", err)
	} else if page, err := io.ReadAll(zr); err != nil || string(page) != staticBody {
		t.Errorf("gzip body holds %d bytes, want the %d of the page: %v", len(page), len(staticBody), err)
	}

	// Proxied: curl to nginx, nginx to the Go server (HTTP/1.0, as nginx
	// sends upstream), the Go server's side; all alike.
	one := randomBody(1 << 20)
	checkFile(t, o("proxied"), one)
	checkFile(t, o("echoed"), upload)
	for _, c := range []struct {
		dir    reprisev1.Direction
		target string
		proto  string
	}{
		{inbound, "/proxy/one?size=1048576", "HTTP/1.1"},
		{outbound, "/one?size=1048576", "HTTP/1.0"},
		{inbound, "/one?size=1048576", "HTTP/1.0"},
	} {
		x := h.one(c.dir, c.target)
		exact{method: "GET", target: c.target, status: 200, resp: one}.check(t, x)
		if x.Request.Proto != c.proto {
			t.Errorf("%s %s: %s, want %s", c.dir, c.target, x.Request.Proto, c.proto)
		}
		if c.dir == outbound && x.Process.GetComm() != "nginx" {
			t.Errorf("%s %s: process %v, want nginx", c.dir, c.target, x.Process)
		}
	}
	for _, c := range []struct {
		dir    reprisev1.Direction
		target string
	}{
		{inbound, "/proxy/echo?via=nginx"},
		{outbound, "/echo?via=nginx"},
		{inbound, "/echo?via=nginx"},
	} {
		exact{method: "POST", target: c.target, status: 200, req: upload, resp: upload}.check(t, h.one(c.dir, c.target))
	}
	exact{method: "GET", target: "/returned?after=1", status: 200, resp: []byte("returned body")}.check(t, h.one(inbound, "/returned?after=1"))
}
