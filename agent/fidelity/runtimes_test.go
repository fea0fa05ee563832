package fidelity

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// staticBody is the file the static servers send.
var staticBody = strings.Repeat("static file line\n", 4096)

func staticDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "page.txt"), []byte(staticBody), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Python's http.server answers HTTP/1.0 with a Content-Length; urllib is
// the client.
func TestPythonServerUrllib(t *testing.T) {
	need(t, "python3")
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	h := capturePort(t, port)
	start(t, base+"/", exec.Command("python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", staticDir(t), strconv.Itoa(port)))
	got := run(t, "python3", "-c", "import sys, urllib.request; sys.stdout.write(str(len(urllib.request.urlopen(sys.argv[1]).read())))", base+"/page.txt?py=1")
	if got != strconv.Itoa(len(staticBody)) {
		t.Fatalf("urllib read %s bytes", got)
	}
	x := h.inbound("/page.txt", 1)[0]
	want{method: "GET", target: "/page.txt?py=1", status: 200, respBody: staticBody}.check(t, x)
	if x.Response.GetProto() != "HTTP/1.0" {
		t.Errorf("proto %s", x.Response.GetProto())
	}
}

// Node's http module writes with writev (head and body together) and, with
// res.write, sends chunked bodies.
func TestNodeServer(t *testing.T) {
	need(t, "node")
	need(t, "curl")
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	h := capturePort(t, port)
	script := `require('http').createServer((req, res) => {
  if (req.url.startsWith('/chunks')) { res.write('first,'); setTimeout(() => res.end('second'), 10); return; }
  let body = ''; req.on('data', d => body += d);
  req.on('end', () => { res.setHeader('Content-Type', 'application/json'); res.end(JSON.stringify({url: req.url, got: body.length})); });
}).listen(` + strconv.Itoa(port) + `, '127.0.0.1');`
	start(t, base+"/ready", exec.Command("node", "-e", script))
	run(t, "curl", "-sS", "-o", "/dev/null", base+"/hello?n=1", base+"/chunks")
	run(t, "curl", "-sS", "-o", "/dev/null", "--data-binary", "abcdef", base+"/post")
	want{method: "GET", target: "/hello?n=1", status: 200, respBody: `{"url":"/hello?n=1","got":0}`}.check(t, h.inbound("/hello", 1)[0])
	want{method: "GET", target: "/chunks", status: 200, respBody: "first,second"}.check(t, h.inbound("/chunks", 1)[0])
	want{method: "POST", target: "/post", reqBody: "abcdef", status: 200, respBody: `{"url":"/post","got":6}`}.check(t, h.inbound("/post", 1)[0])
}

// nginx sends static files with sendfile (the body is framed but not
// captured) and heads with writev.
func TestNginx(t *testing.T) {
	need(t, "nginx")
	need(t, "curl")
	port := freePort(t, "tcp4", "127.0.0.1:0")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	dir := staticDir(t)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(`daemon off;
master_process off;
pid `+dir+`/nginx.pid;
error_log stderr;
events {}
http {
  access_log off;
  sendfile on;
  client_body_temp_path `+dir+`;
  server {
    listen 127.0.0.1:`+strconv.Itoa(port)+`;
    root `+dir+`;
    location = /returned { default_type text/plain; return 200 "returned body"; }
  }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := capturePort(t, port)
	start(t, base+"/returned?ready", exec.Command("nginx", "-c", conf, "-e", "stderr"))
	run(t, "curl", "-sS", "-o", "/dev/null", base+"/returned", base+"/page.txt", base+"/returned?again=1")
	want{method: "GET", target: "/returned", status: 200, respBody: "returned body"}.check(t, h.inbound("/returned", 2)[1])
	x := h.inbound("/page.txt", 1)[0]
	r := x.Response
	if r == nil || r.StatusCode != 200 || r.BodySize != int64(len(staticBody)) || !r.BodyTruncated || !x.Capture.ResponseBodyUnavailable {
		t.Errorf("sendfile response %v capture %v", r, x.Capture)
	}
	// The connection goes on after the sendfile body.
	want{method: "GET", target: "/returned?again=1", status: 200, respBody: "returned body"}.check(t, h.inbound("/returned?again", 1)[0])
}
