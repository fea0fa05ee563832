package capture

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// CgroupV2Root finds where the cgroup v2 hierarchy is mounted in this
// process's view: /sys/fs/cgroup on a pure v2 host, beside the v1
// controllers (/sys/fs/cgroup/unified) on a hybrid one. Mountinfo lines
// read: id parent major:minor root mountpoint options... - fstype source ...
func CgroupV2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if f := strings.Fields(pre); ok && len(f) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return f[4], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 file system is mounted")
}

// containerID is what a container id (or a prefix of one) looks like.
var containerID = regexp.MustCompile(`^[0-9a-f]{12,64}$`)

// resolveCgroups turns Config.Cgroups into cgroup v2 ids, the inode numbers
// of the directories that bpf_get_current_cgroup_id returns. A process is
// in a leaf cgroup, so every directory below a named one is included.
func resolveCgroups(names []string) ([]uint64, error) {
	if len(names) == 0 {
		return nil, nil
	}
	root, err := CgroupV2Root()
	if err != nil {
		return nil, fmt.Errorf("config: Cgroups: find the cgroup v2 hierarchy: %w", err)
	}
	var ids []uint64
	for _, name := range names {
		dir, err := cgroupDir(root, name)
		if err != nil {
			return nil, err
		}
		err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			ids = append(ids, info.Sys().(*syscall.Stat_t).Ino)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("config: Cgroups %q: %w", name, err)
		}
	}
	return ids, nil
}

// cgroupDir finds the directory of one Config.Cgroups entry: a path, or a
// container id matched against directory names (docker-<id>.scope,
// cri-containerd-<id>.scope, crio-<id>.scope, .../<id>).
func cgroupDir(root, name string) (string, error) {
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, name)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return path, nil
	}
	if !containerID.MatchString(name) {
		return "", fmt.Errorf("config: Cgroups %q: %s is not a cgroup directory and %q is not a container id", name, path, name)
	}
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.Contains(d.Name(), name) {
			found = append(found, path)
			return filepath.SkipDir
		}
		return nil
	})
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("config: Cgroups %q: look up container: %w", name, err)
	case len(found) == 0:
		return "", fmt.Errorf("config: Cgroups %q: no cgroup under %s names this container", name, root)
	case len(found) > 1:
		return "", fmt.Errorf("config: Cgroups %q: ambiguous container id, matches %s and %s", name, found[0], found[1])
	}
	return found[0], nil
}
