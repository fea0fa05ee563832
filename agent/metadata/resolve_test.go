package metadata

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

const (
	ctrID  = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
	podUID = "1b2c3d4e-5f60-4718-9a0b-c1d2e3f40516"
)

// fakeProc makes a /proc with one process in a containerd pod.
func fakeProc(t *testing.T, pid, cgroup string) string {
	root := t.TempDir()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/local/bin/orders", filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func pod(name, node, uid string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(uid), Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "sidecar", ContainerID: "containerd://" + "aa" + ctrID[2:]},
			{Name: "orders", ContainerID: "containerd://" + ctrID},
		}},
	}
}

func exchange(pid uint32) *reprisev1.Exchange {
	return &reprisev1.Exchange{Service: "orders:8080", Process: &reprisev1.Process{Pid: pid, Comm: "orders", CgroupId: 77}}
}

func TestResolverOwnProcess(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	x := exchange(uint32(os.Getpid()))
	NewResolver("/proc", 0, nil).Enrich(x)
	if x.Process.Exe != self || x.Service != "orders:8080" {
		t.Fatalf("exe %q service %q, want %q and the tracker's service", x.Process.Exe, x.Service, self)
	}
}

func TestResolverContainer(t *testing.T) {
	root := fakeProc(t, "42", "0::/system.slice/docker-"+ctrID+".scope\n")
	r := NewResolver(root, 2, nil)
	x := exchange(42)
	r.Enrich(x)
	p := x.Process
	if p.Exe != "/usr/local/bin/orders" || p.ContainerId != ctrID || p.PodUid != "" || x.Service != ctrID[:12] {
		t.Fatalf("process %+v, service %q", p, x.Service)
	}
	// The cache answers once the process is gone.
	if err := os.RemoveAll(filepath.Join(root, "42")); err != nil {
		t.Fatal(err)
	}
	x = exchange(42)
	r.Enrich(x)
	if x.Process.ContainerId != ctrID {
		t.Fatalf("not cached: %+v", x.Process)
	}
	// A process that exited before it was seen keeps what the tracker knew.
	x = exchange(43)
	r.Enrich(x)
	if x.Process.Exe != "" || x.Service != "orders:8080" {
		t.Fatalf("unknown process: %+v, service %q", x.Process, x.Service)
	}
}

func TestResolverPods(t *testing.T) {
	const other = "99999999-8888-7777-6666-555555555555"
	cs := fake.NewSimpleClientset(
		pod("orders-7d9f", "node-a", podUID, map[string]string{"app.kubernetes.io/name": "orders-api", "app": "orders"}),
		pod("billing-1", "node-a", other, map[string]string{"app": "billing"}),
	)
	idx, err := NewPodIndex(cs, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := idx.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Only this node's pods are listed and watched.
	for _, a := range cs.Actions() {
		if l, ok := a.(k8stesting.ListActionImpl); ok {
			if got := l.GetListRestrictions().Fields.String(); got != "spec.nodeName=node-a" {
				t.Fatalf("list field selector %q", got)
			}
		}
	}

	tests := []struct {
		name, cgroup                        string
		wantPod, wantContainer, wantService string
		wantLabels                          int
	}{
		{"systemd driver, app.kubernetes.io/name wins",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4718_9a0b_c1d2e3f40516.slice/cri-containerd-" + ctrID + ".scope\n",
			"orders-7d9f", "orders", "orders-api", 2},
		{"cgroupfs driver, app label", "0::/kubepods/besteffort/pod" + other + "/crio-" + ctrID + "\n",
			"billing-1", "orders", "billing", 1},
		{"pod not on this node", "0::/kubepods/pod00000000-0000-0000-0000-000000000000/" + ctrID + "\n",
			"", "", ctrID[:12], 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := exchange(42)
			NewResolver(fakeProc(t, "42", tc.cgroup), 0, idx).Enrich(x)
			p := x.Process
			if p.PodName != tc.wantPod || p.ContainerName != tc.wantContainer || x.Service != tc.wantService || len(p.Labels) != tc.wantLabels {
				t.Fatalf("process %+v, service %q", p, x.Service)
			}
			if tc.wantPod != "" && p.PodNamespace != "shop" {
				t.Fatalf("namespace %q", p.PodNamespace)
			}
		})
	}

	// A pod created later is found once the watch delivers it.
	const late = "abcdefab-cdef-abcd-efab-cdefabcdefab"
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod("late-1", "node-a", late, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		if p, c, ok := idx.Lookup(late, ctrID); ok && p.Name == "late-1" && c == "orders" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("pod created after the start not found")
}

func TestPodIndexNeedsNode(t *testing.T) {
	if _, err := NewPodIndex(fake.NewSimpleClientset(), ""); err == nil {
		t.Fatal("no error without a node name")
	}
}
