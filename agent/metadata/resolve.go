package metadata

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// DefaultCacheSize bounds the processes whose metadata is remembered.
const DefaultCacheSize = 4096

// procKey tells processes apart: a pid reused in another cgroup is another
// process.
type procKey struct {
	pid    uint32
	cgroup uint64
}

type procInfo struct {
	exe, containerID, podUID string
}

// Resolver adds process, container and pod metadata to exchanges.
type Resolver struct {
	proc  string
	cache *lru.Cache[procKey, procInfo]
	pods  *PodIndex
}

// NewResolver reads processes under procRoot (normally /proc, the host's:
// the agent runs with hostPID) and remembers up to size of them. pods may be
// nil outside Kubernetes.
func NewResolver(procRoot string, size int, pods *PodIndex) *Resolver {
	if size <= 0 {
		size = DefaultCacheSize
	}
	c, _ := lru.New[procKey, procInfo](size) // errors only on size <= 0
	return &Resolver{proc: procRoot, cache: c, pods: pods}
}

// Enrich fills x.Process and x.Service from what is known of x's process.
// A process that has exited leaves the fields as they were.
func (r *Resolver) Enrich(x *reprisev1.Exchange) {
	p := x.Process
	if p == nil || p.Pid == 0 {
		return
	}
	k := procKey{p.Pid, p.CgroupId}
	info, ok := r.cache.Get(k)
	if !ok {
		info = r.read(p.Pid)
		r.cache.Add(k, info)
	}
	p.Exe, p.ContainerId, p.PodUid = info.exe, info.containerID, info.podUID
	if r.pods != nil && info.podUID != "" {
		if pod, container, ok := r.pods.Lookup(info.podUID, info.containerID); ok {
			p.PodName, p.PodNamespace, p.Labels, p.ContainerName = pod.Name, pod.Namespace, pod.Labels, container
		}
	}
	if s := service(p); s != "" {
		x.Service = s
	}
}

func (r *Resolver) read(pid uint32) procInfo {
	dir := filepath.Join(r.proc, strconv.FormatUint(uint64(pid), 10))
	var info procInfo
	exe, _ := os.Readlink(filepath.Join(dir, "exe"))
	info.exe = strings.ToValidUTF8(exe, "\uFFFD") // a protobuf string must be UTF-8
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		info.containerID, info.podUID = ParseCgroup(b)
	}
	return info
}

// service names the workload: the pod's app.kubernetes.io/name or app label,
// else its container's name or short id; "" keeps the tracker's comm:port.
func service(p *reprisev1.Process) string {
	for _, l := range []string{"app.kubernetes.io/name", "app"} {
		if v := p.Labels[l]; v != "" {
			return v
		}
	}
	switch {
	case p.ContainerName != "":
		return p.ContainerName
	case p.ContainerId != "":
		return p.ContainerId[:12]
	}
	return ""
}
