package deploy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/reprise-dev/reprise/agent/capture"
	"github.com/reprise-dev/reprise/internal/exchfile"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// TestAgentInContainerd runs the agent the way a node runs the DaemonSet:
// its image, with the OCI spec derived from the rendered manifest
// (capabilities, host PID namespace, mounts, user, read-only root,
// arguments, memory limit), under containerd. The collector runs from its
// image with the Deployment's arguments, so the agent authenticates with its
// node's token over TLS, as deploy/secrets.sh sets it up; the agent shares
// the collector's network namespace as containers of one pod do, in place
// of the cluster's network. nginx serves in a third container made from the
// host's files; the exchange curl makes with it must reach the collector
// with nginx's container id and cgroup.
func TestAgentInContainerd(t *testing.T) {
	tag := images(t)
	o := render(t, ".")
	dir := t.TempDir()
	node := "node-" + randomHex(4)
	sec := writeSecrets(t, dir, node, o.svc.Name+"."+o.svc.Namespace+".svc")

	// The collector: the Deployment's container, its store on a volume
	// rather than PostgreSQL.
	dspec := o.dep.Spec.Template.Spec
	data := filepath.Join(dir, "data")
	mkdirOwned(t, data, dspec.SecurityContext.RunAsUser)
	writeFile(t, filepath.Join(dir, "config", "sanitize.yaml"), readFile(t, "sanitize.yaml"))
	collID := "collector-" + randomHex(4)
	collector := startContainer(t, podContainer{
		id: collID, image: "docker.io/reprise/collector:" + tag, spec: dspec, c: dspec.Containers[0],
		volumes: map[string]string{"config": filepath.Join(dir, "config"), "auth": sec.auth, "tls": sec.tls, "token-key": sec.tokenKey},
		env:     map[string]string{"REPRISE_STORE": "/data/reprise.db"},
		extra:   []string{"--mount", "type=bind,src=" + data + ",dst=/data,options=rbind:rw"},
	})
	collector.waitLog(t, `"msg":"serving"`)

	// The agent: the DaemonSet's container in the collector's network
	// namespace, where the service's name resolves to it.
	aspec := o.ds.Spec.Template.Spec
	hosts := filepath.Join(dir, "hosts")
	writeFile(t, hosts, []byte("127.0.0.1 localhost "+sec.serverName+"\n"))
	agent := startContainer(t, podContainer{
		id: "agent-" + randomHex(4), image: "docker.io/reprise/agent:" + tag, spec: aspec, c: aspec.Containers[0],
		volumes: map[string]string{"agent-tokens": sec.tokens, "collector-ca": sec.tls},
		env:     map[string]string{"NODE_NAME": node},
		extra: []string{"--with-ns", "network:/proc/" + strconv.Itoa(collector.pid) + "/ns/net",
			"--mount", "type=bind,src=" + hosts + ",dst=/etc/hosts,options=rbind:ro"},
	})
	agent.waitLog(t, `"msg":"capturing"`)
	checkCapabilities(t, agent.pid, aspec.Containers[0].SecurityContext.Capabilities.Add)

	// The service: nginx in its own container, with an id as Kubernetes'
	// runtimes make them, on the host's network so curl reaches it.
	port := freePort(t)
	svcID := randomHex(32)
	nginxRoot := nginxRootfs(t, filepath.Join(dir, "nginx"), port)
	svc := startRootfsContainer(t, svcID, nginxRoot, "/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf")
	url := fmt.Sprintf("http://127.0.0.1:%d/reprise-containerd-test", port)
	body := curlUntil(t, url)
	if body != "served from a container\n" {
		t.Fatalf("curl %s = %q", url, body)
	}

	x := waitExchange(t, collector.id, sec.serverName, "/reprise-containerd-test")
	if got := string(x.GetResponse().GetBody()); got != body {
		t.Errorf("recorded response body %q, curl saw %q", got, body)
	}
	p := x.GetProcess()
	if p.GetPid() != uint32(svc.pid) || p.GetContainerId() != svcID {
		t.Errorf("exchange of pid %d in container %q, want nginx's pid %d in %s", p.GetPid(), p.GetContainerId(), svc.pid, svcID)
	}
	// containerd puts a task in the cgroup /<namespace>/<id>; its v2 id is
	// the inode of that directory in the unified hierarchy (at
	// /sys/fs/cgroup on pure v2 hosts, beside the v1 ones on hybrid hosts).
	root, err := capture.CgroupV2Root()
	if err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join(root, ctrNamespace, svcID)
	var st syscall.Stat_t
	if err := syscall.Stat(cg, &st); err != nil {
		t.Fatalf("the service's cgroup: %v", err)
	}
	if p.GetCgroupId() != st.Ino {
		t.Errorf("exchange cgroup id %d, want %d (%s)", p.GetCgroupId(), st.Ino, cg)
	}
	if x.GetCapture().GetAgentId() != node {
		t.Errorf("agent id %q, want the node name %q", x.GetCapture().GetAgentId(), node)
	}
}

// secrets are the host directories standing in for the Secrets
// deploy/secrets.sh makes.
type secrets struct {
	tokens, auth, tls, tokenKey string
	serverName                  string
}

// writeSecrets writes what deploy/secrets.sh puts in the Secrets, and a CA
// and collector certificate as cert-manager issues them.
func writeSecrets(t *testing.T, dir, node, serverName string) secrets {
	s := secrets{tokens: filepath.Join(dir, "agent-tokens"), auth: filepath.Join(dir, "auth"), tls: filepath.Join(dir, "tls"),
		tokenKey: filepath.Join(dir, "token-key"), serverName: serverName}
	writeFile(t, filepath.Join(s.tokenKey, "token-key"), []byte(randomHex(32)))
	token := randomHex(32)
	sum := sha256.Sum256([]byte(token))
	writeFile(t, filepath.Join(s.tokens, node), []byte(token))
	writeFile(t, filepath.Join(s.auth, "agents.yaml"), fmt.Appendf(nil, "agents:\n  - id: %s\n    token_sha256: %x\n", node, sum))
	writeFile(t, filepath.Join(s.auth, "query-token"), []byte(randomHex(32)))

	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reprise-test-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: serverName}, DNSNames: []string{serverName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caCert, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	writeFile(t, filepath.Join(s.tls, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	writeFile(t, filepath.Join(s.tls, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}))
	writeFile(t, filepath.Join(s.tls, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	// Kubernetes mounts Secrets readable by the pod's user: 0644 here.
	for _, d := range []string{s.tokens, s.auth, s.tls, s.tokenKey} {
		files, _ := os.ReadDir(d)
		for _, f := range files {
			_ = os.Chmod(filepath.Join(d, f.Name()), 0o644)
		}
	}
	return s
}

// podContainer is one container of a pod spec and what stands in for the
// cluster: host directories for the volumes that are not host paths, the
// environment the kubelet resolves, and further ctr flags.
type podContainer struct {
	id, image string
	spec      corev1.PodSpec
	c         corev1.Container
	volumes   map[string]string
	env       map[string]string
	extra     []string
}

// ctrArgs derives the flags of ctr run from the pod spec: the capabilities
// (ALL dropped means every default one dropped), the host PID namespace,
// the read-only root, no new privileges, the mounts, the environment and
// the memory limit; then the image, the id and the expanded arguments.
func (p podContainer) ctrArgs(t *testing.T) []string {
	t.Helper()
	args := []string{"-n", ctrNamespace, "run", "--rm", "--cgroup", "/" + ctrNamespace + "/" + p.id}
	sc := p.c.SecurityContext
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		args = append(args, "--privileged")
	}
	if sc != nil && sc.Capabilities != nil {
		var add []string
		for _, c := range sc.Capabilities.Add {
			add = append(add, "CAP_"+string(c))
			args = append(args, "--cap-add", "CAP_"+string(c))
		}
		if slices.Contains(sc.Capabilities.Drop, "ALL") {
			for _, c := range defaultCapabilities(t) {
				if !slices.Contains(add, c) {
					args = append(args, "--cap-drop", c)
				}
			}
		}
	}
	if sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		args = append(args, "--read-only")
	}
	// ctr sets no_new_privs unless told otherwise, as the manifests want.
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		args = append(args, "--allow-new-privs")
	}
	if p.spec.HostPID {
		// The host's PID namespace is the test's (pid 1's may be unreadable
		// in a VM).
		args = append(args, "--with-ns", "pid:/proc/"+strconv.Itoa(os.Getpid())+"/ns/pid")
	}
	vols := map[string]corev1.Volume{}
	for _, v := range p.spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range p.c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("%s mounts %s, not a volume", p.c.Name, m.Name)
		}
		src := p.volumes[m.Name]
		if v.HostPath != nil {
			src = v.HostPath.Path
		}
		if src == "" {
			t.Fatalf("no host directory stands in for volume %s", m.Name)
		}
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		args = append(args, "--mount", "type=bind,src="+src+",dst="+m.MountPath+",options=rbind:"+mode)
	}
	env := map[string]string{}
	for _, e := range p.c.Env {
		v, ok := p.env[e.Name]
		if e.ValueFrom == nil {
			v, ok = e.Value, true
		}
		if !ok {
			t.Fatalf("nothing stands in for env %s", e.Name)
		}
		env[e.Name] = v
		args = append(args, "--env", e.Name+"="+v)
	}
	if mem := p.c.Resources.Limits.Memory(); !mem.IsZero() {
		args = append(args, "--memory-limit", strconv.FormatInt(mem.Value(), 10))
	}
	args = append(args, p.extra...)
	args = append(args, p.image, p.id)
	// As the kubelet does: the command, else the image's entrypoint,
	// followed by the arguments.
	command := p.c.Command
	if len(command) == 0 {
		command = entrypoint(t, strings.TrimPrefix(p.image, "docker.io/"))
	}
	args = append(args, command...)
	// The kubelet expands $(VAR) of the container's environment.
	for _, a := range p.c.Args {
		args = append(args, envRef.ReplaceAllStringFunc(a, func(ref string) string { return env[ref[2:len(ref)-1]] }))
	}
	return args
}

// entrypoint reads an image's entrypoint from dockerd, which built it.
func entrypoint(t *testing.T, image string) []string {
	t.Helper()
	var ep []string
	if err := json.Unmarshal([]byte(docker(t, "inspect", "--format", "{{json .Config.Entrypoint}}", image)), &ep); err != nil {
		t.Fatalf("entrypoint of %s: %v", image, err)
	}
	return ep
}

var envRef = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)

var (
	defaultCaps     []string
	defaultCapsOnce sync.Once
)

// defaultCapabilities are those ctr gives a container unless told
// otherwise.
func defaultCapabilities(t *testing.T) []string {
	defaultCapsOnce.Do(func() {
		out, err := exec.Command("ctr", "oci", "spec").Output()
		if err != nil {
			t.Fatalf("ctr oci spec: %v", err)
		}
		var spec struct {
			Process struct {
				Capabilities struct{ Bounding []string }
			}
		}
		if err := json.Unmarshal(out, &spec); err != nil {
			t.Fatal(err)
		}
		defaultCaps = spec.Process.Capabilities.Bounding
	})
	return defaultCaps
}

// container is a running task.
type container struct {
	id     string
	pid    int
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan struct{} // closed once ctr run returned
}

func startContainer(t *testing.T, p podContainer) *container {
	t.Helper()
	c := runCtr(t, p.id, p.ctrArgs(t))
	if want := runAsUser(p.spec, p.c); want != nil {
		if uid := procUID(t, c.pid); uid != *want {
			t.Errorf("%s runs as uid %d, the manifest says %d", p.id, uid, *want)
		}
	}
	return c
}

func startRootfsContainer(t *testing.T, id, rootfs string, command ...string) *container {
	t.Helper()
	args := append([]string{"-n", ctrNamespace, "run", "--rm", "--net-host", "--cgroup", "/" + ctrNamespace + "/" + id, "--rootfs", rootfs, id}, command...)
	return runCtr(t, id, args)
}

// runCtr starts ctr run in the background and waits for its task to run;
// the task is killed at the end of the test.
func runCtr(t *testing.T, id string, args []string) *container {
	t.Helper()
	c := &container{id: id, cmd: exec.Command("ctr", args...), logs: &lockedBuffer{}, exited: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		_ = exec.Command("ctr", "-n", ctrNamespace, "task", "kill", "-s", "SIGKILL", id).Run()
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
		}
		_ = exec.Command("ctr", "-n", ctrNamespace, "container", "rm", id).Run()
		if t.Failed() {
			t.Logf("%s output:\n%s", id, lastLines(c.logs.String(), 30))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("ctr", "-n", ctrNamespace, "task", "ls").Output()
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == id && f[2] == "RUNNING" {
				c.pid, _ = strconv.Atoi(f[1])
				return c
			}
		}
		select {
		case <-c.exited:
			t.Fatalf("ctr run %s exited: %s\n%s", id, c.cmd.ProcessState, c.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("task %s not running after 60s:\n%s", id, c.logs.String())
	return nil
}

// waitLog waits for a line of the container's output holding s.
func (c *container) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(c.logs.String(), s) {
			return
		}
		select {
		case <-c.exited:
			t.Fatalf("%s exited before logging %s:\n%s", c.id, s, lastLines(c.logs.String(), 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not log %s:\n%s", c.id, s, lastLines(c.logs.String(), 30))
}

// waitExchange asks the collector, with its query token over TLS from
// inside its container, for the inbound exchange of path, until it comes.
func waitExchange(t *testing.T, collectorID, serverName, path string) *reprisev1.Exchange {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for i := 0; time.Now().Before(deadline); i++ {
		out, err := exec.Command("ctr", "-n", ctrNamespace, "task", "exec", "--exec-id", "query-"+strconv.Itoa(i), collectorID,
			"/collector", "query", "--addr", "127.0.0.1:7070", "--tls-ca", "/etc/reprise/tls/ca.crt", "--tls-server-name", serverName,
			"--token-file", "/etc/reprise/auth/query-token", "--path-prefix", path, "--direction", "inbound").Output()
		last = string(out)
		if ee, ok := err.(*exec.ExitError); ok {
			last += string(ee.Stderr)
		}
		if err == nil {
			for x, err := range exchfile.Read(bytes.NewReader(out), exchfile.JSONL) {
				if err != nil {
					t.Fatalf("query output: %v\n%s", err, out)
				}
				return x
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("no inbound exchange of %s in the collector; last query:\n%s", path, last)
	return nil
}

// checkCapabilities compares the effective capabilities of pid with want.
func checkCapabilities(t *testing.T, pid int, want []corev1.Capability) {
	t.Helper()
	var mask uint64
	for _, c := range want {
		n, ok := capNumbers[string(c)]
		if !ok {
			t.Fatalf("capability %s: number unknown to the test", c)
		}
		mask |= 1 << n
	}
	status := readFile(t, fmt.Sprintf("/proc/%d/status", pid))
	m := regexp.MustCompile(`(?m)^CapEff:\s*([0-9a-f]+)$`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no CapEff in /proc/%d/status", pid)
	}
	got, _ := strconv.ParseUint(string(m[1]), 16, 64)
	if got != mask {
		t.Errorf("agent's effective capabilities %#x, the manifest's %v are %#x", got, want, mask)
	}
}

// capNumbers are the numbers of the capabilities (linux/capability.h) the
// manifests may name.
var capNumbers = map[string]uint{"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "KILL": 5,
	"SETGID": 6, "SETUID": 7, "NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13, "SYS_PTRACE": 19,
	"SYS_ADMIN": 21, "SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39}

func runAsUser(spec corev1.PodSpec, c corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if spec.SecurityContext != nil {
		return spec.SecurityContext.RunAsUser
	}
	return nil
}

func procUID(t *testing.T, pid int) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^Uid:\s*(\d+)`).FindSubmatch(readFile(t, fmt.Sprintf("/proc/%d/status", pid)))
	if m == nil {
		t.Fatalf("no Uid in /proc/%d/status", pid)
	}
	uid, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return uid
}

// nginxRootfs makes a root file system of the host's nginx and the
// libraries it links, serving a fixed body on 127.0.0.1:port.
func nginxRootfs(t *testing.T, root string, port int) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatalf("nginx (scripts/deps.sh installs it): %v", err)
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	files := []string{bin}
	for _, m := range regexp.MustCompile(`(/\S+\.so[.\d]*)`).FindAllString(string(out), -1) {
		files = append(files, m)
	}
	for _, f := range files {
		copyFile(t, f, filepath.Join(root, f))
	}
	for _, d := range []string{"tmp", "var/log/nginx", "var/lib/nginx", "proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534::/:/sbin/nologin\n"))
	writeFile(t, filepath.Join(root, "etc/group"), []byte("root:x:0:\nnogroup:x:65534:\n"))
	writeFile(t, filepath.Join(root, "etc/nginx/nginx.conf"), fmt.Appendf(nil, `daemon off;
master_process off;
error_log stderr;
pid /tmp/nginx.pid;
events {}
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 127.0.0.1:%d;
        location / { return 200 "served from a container\n"; }
    }
}
`, port))
	return root
}

// copyFile copies src to dst, with its permissions.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, readFile(t, src))
	if err := os.Chmod(dst, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

func curlUntil(t *testing.T, url string) string {
	t.Helper()
	var out []byte
	var err error
	for range 50 {
		if out, err = exec.Command("curl", "-sS", "--fail", "--max-time", "5", url).Output(); err == nil {
			return string(out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("curl %s: %v", url, err)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func mkdirOwned(t *testing.T, dir string, uid *int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if uid != nil {
		if err := os.Chown(dir, int(*uid), int(*uid)); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*lockedBuffer)(nil)
