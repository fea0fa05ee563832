package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-dev/reprise/internal/privileged"
)

// ctrNamespace is the containerd namespace the tests run their containers
// in, apart from anything else on the host.
const ctrNamespace = "reprise-test"

// runtime is the container runtime of the tests: containerd and dockerd,
// started when not running, and the images, built once for all tests.
var runtime struct {
	once    sync.Once
	err     error
	tag     string
	started []*exec.Cmd // stopped in reverse order by TestMain
	dir     string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if runtime.tag != "" {
		for _, img := range []string{"agent", "collector", "replayer"} {
			_ = exec.Command("docker", "image", "rm", "reprise/"+img+":"+runtime.tag).Run()
			_ = exec.Command("ctr", "-n", ctrNamespace, "images", "rm", "docker.io/reprise/"+img+":"+runtime.tag).Run()
		}
	}
	for i := len(runtime.started) - 1; i >= 0; i-- {
		c := runtime.started[i]
		_ = c.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	if runtime.dir != "" {
		os.RemoveAll(runtime.dir)
	}
	os.Exit(code)
}

// images starts the runtime when it is not running and builds the three
// images with make images' script, once; it returns their tag. The images
// are also in containerd's ctrNamespace.
func images(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		privileged.SkipOrFail(t, "running containers needs root")
	}
	runtime.once.Do(func() { runtime.tag, runtime.err = buildImages() })
	if runtime.err != nil {
		t.Fatal(runtime.err)
	}
	return runtime.tag
}

func buildImages() (string, error) {
	dir, err := os.MkdirTemp("", "reprise-runtime")
	if err != nil {
		return "", err
	}
	runtime.dir = dir
	if exec.Command("ctr", "version").Run() != nil {
		if err := startDaemon(dir, "containerd", nil, "ctr", "version"); err != nil {
			return "", err
		}
	}
	if exec.Command("docker", "info").Run() != nil {
		if err := startDaemon(dir, "dockerd", []string{"--containerd=/run/containerd/containerd.sock"}, "docker", "info"); err != nil {
			return "", err
		}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "test-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "./deploy/image/images.sh")
	build.Dir = ".."
	build.Env = append(os.Environ(), "TAG="+tag)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make images: %v\n%s", err, out)
	}
	// dockerd keeps its images apart from containerd's: hand them over.
	save := exec.CommandContext(ctx, "docker", "save", "reprise/agent:"+tag, "reprise/collector:"+tag)
	load := exec.CommandContext(ctx, "ctr", "-n", ctrNamespace, "images", "import", "-")
	var saveErr, loadOut bytes.Buffer
	save.Stderr = &saveErr
	load.Stdout, load.Stderr = &loadOut, &loadOut
	pipe, err := save.StdoutPipe()
	if err != nil {
		return tag, err
	}
	load.Stdin = pipe
	if err := save.Start(); err != nil {
		return tag, err
	}
	if err := load.Run(); err != nil {
		return tag, fmt.Errorf("ctr images import: %v\n%s", err, &loadOut)
	}
	if err := save.Wait(); err != nil {
		return tag, fmt.Errorf("docker save: %v\n%s", err, &saveErr)
	}
	return tag, nil
}

// startDaemon starts name with args, logging under dir, and waits up to 30 s
// for the ready command to succeed.
func startDaemon(dir, name string, args []string, ready ...string) error {
	log, err := os.Create(dir + "/" + name + ".log")
	if err != nil {
		return err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	runtime.started = append(runtime.started, cmd)
	for range 150 {
		if exec.Command(ready[0], ready[1:]...).Run() == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := os.ReadFile(log.Name())
	return fmt.Errorf("%s did not become ready: %s", name, lastLines(string(out), 20))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
