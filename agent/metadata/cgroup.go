// Package metadata tells which workload an exchange belongs to: the
// process's executable, its container and, in Kubernetes, its pod. The
// container and pod UID come from the process's cgroup path, so they are
// known without a container runtime API; pod names and labels come from the
// Kubernetes API (see PodIndex).
package metadata

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
)

var (
	// A container's cgroup is named by its 64-hex id, bare (cgroupfs
	// driver) or as a systemd scope of its runtime: docker-<id>.scope,
	// cri-containerd-<id>.scope, crio-<id>.scope.
	containerRE = regexp.MustCompile(`^(?:(?:docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$`)
	// Kubelet names pod cgroups pod<uid>; the systemd driver writes the
	// UID's dashes as underscores.
	podRE = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$`)
)

// ParseCgroup reads the contents of /proc/PID/cgroup (v1 or v2) and returns
// the container id and Kubernetes pod UID found in its paths, or "".
func ParseCgroup(data []byte) (containerID, podUID string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controllers:path; the path may contain colons.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		c, p := parsePath(parts[2])
		if containerID == "" {
			containerID = c
		}
		if podUID == "" {
			podUID = p
		}
		if containerID != "" && podUID != "" {
			break
		}
	}
	return containerID, podUID
}

// parsePath looks at each element of one cgroup path.
func parsePath(path string) (containerID, podUID string) {
	for el := range strings.SplitSeq(path, "/") {
		if m := containerRE.FindStringSubmatch(el); m != nil {
			containerID = m[1]
		}
		if m := podRE.FindStringSubmatch(el); m != nil {
			podUID = strings.ReplaceAll(m[1], "_", "-")
		}
	}
	return containerID, podUID
}
