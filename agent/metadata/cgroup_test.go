package metadata

import "testing"

func TestParseCgroup(t *testing.T) {
	const (
		id  = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
		uid = "1b2c3d4e-5f60-4718-9a0b-c1d2e3f40516"
		und = "1b2c3d4e_5f60_4718_9a0b_c1d2e3f40516"
	)
	tests := []struct {
		name, in, id, pod string
	}{
		{"host process, cgroup v2", "0::/user.slice/user-1000.slice/session-3.scope\n", "", ""},
		{"docker, cgroupfs driver", "0::/docker/" + id + "\n", id, ""},
		{"docker, systemd driver", "0::/system.slice/docker-" + id + ".scope\n", id, ""},
		{"containerd in kubernetes, systemd driver",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + und + ".slice/cri-containerd-" + id + ".scope\n", id, uid},
		{"containerd in kubernetes, cgroupfs driver", "0::/kubepods/besteffort/pod" + uid + "/" + id + "\n", id, uid},
		{"guaranteed pod, systemd driver", "0::/kubepods.slice/kubepods-pod" + und + ".slice/cri-containerd-" + id + ".scope\n", id, uid},
		{"CRI-O, systemd driver", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + und + ".slice/crio-" + id + ".scope\n", id, uid},
		{"CRI-O, cgroupfs driver", "0::/kubepods/burstable/pod" + uid + "/crio-" + id + "\n", id, uid},
		{"CRI-O conmon is not the container", "0::/kubepods.slice/kubepods-pod" + und + ".slice/crio-conmon-" + id + ".scope\n", "", uid},
		{"cgroup v1 lines", "12:pids:/kubepods/burstable/pod" + uid + "/" + id + "\n11:memory:/kubepods/burstable/pod" + uid + "/" + id + "\n1:name=systemd:/kubepods/burstable/pod" + uid + "/" + id + "\n", id, uid},
		{"hybrid host (v1 controllers, v2 beside them), runc in both",
			"9:name=systemd:/k8s.io/" + id + "\n4:memory:/k8s.io/" + id + "\n1:cpu:/k8s.io/" + id + "\n0::/k8s.io/" + id + "\n", id, ""},
		{"hybrid host, runtime that leaves the unified hierarchy alone",
			"4:memory:/kubepods/besteffort/pod" + uid + "/" + id + "\n1:name=systemd:/kubepods/besteffort/pod" + uid + "/" + id + "\n0::/\n", id, uid},
		{"pure v2, read from a private cgroup namespace",
			"0::/../../kubepods.slice/kubepods-pod" + und + ".slice/cri-containerd-" + id + ".scope\n", id, uid},
		{"pod sandbox cgroup only", "0::/kubepods/burstable/pod" + uid + "\n", "", uid},
		{"short hex is not an id", "0::/docker/3f4e5d6c7b8a\n", "", ""},
		{"garbage", "not a cgroup file\x00\n::\n", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, pod := ParseCgroup([]byte(tc.in))
			if id != tc.id || pod != tc.pod {
				t.Fatalf("ParseCgroup = %q, %q; want %q, %q", id, pod, tc.id, tc.pod)
			}
		})
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/kubepods/burstable/pod1b2c3d4e-5f60-4718-9a0b-c1d2e3f40516/crio-3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, pod := ParseCgroup(data)
		if id != "" && len(id) != 64 || pod != "" && len(pod) != 36 {
			t.Fatalf("ParseCgroup = %q, %q", id, pod)
		}
	})
}
