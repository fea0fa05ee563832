// Package deploy holds the Kubernetes manifests and container files; this
// test checks that the manifests parse strictly into the Kubernetes API
// types and that their parts point at each other correctly.
package deploy

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

type kustomization struct {
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

// load decodes every object of every resource the kustomization lists,
// rejecting unknown fields.
func load(t *testing.T) ([]runtime.Object, kustomization) {
	t.Helper()
	raw, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for _, res := range k.Resources {
		data, err := os.ReadFile(res)
		if err != nil {
			t.Fatalf("kustomization lists %s: %v", res, err)
		}
		docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := docs.Read()
			if err != nil {
				break
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, _, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			objs = append(objs, obj)
		}
	}
	return objs, k
}

func TestManifests(t *testing.T) {
	objs, k := load(t)
	var (
		ds      *appsv1.DaemonSet
		dep     *appsv1.Deployment
		svc     *corev1.Service
		sas     []string
		secrets []string
		role    *rbacv1.ClusterRole
		binding *rbacv1.ClusterRoleBinding
	)
	for _, o := range objs {
		switch v := o.(type) {
		case *appsv1.DaemonSet:
			ds = v
		case *appsv1.Deployment:
			dep = v
		case *corev1.Service:
			svc = v
		case *corev1.ServiceAccount:
			sas = append(sas, v.Name)
		case *corev1.Secret:
			secrets = append(secrets, v.Name)
		case *rbacv1.ClusterRole:
			role = v
		case *rbacv1.ClusterRoleBinding:
			binding = v
		}
	}
	if ds == nil || dep == nil || svc == nil || role == nil || binding == nil {
		t.Fatalf("missing objects: daemonset %v deployment %v service %v role %v binding %v", ds != nil, dep != nil, svc != nil, role != nil, binding != nil)
	}

	t.Run("agent daemonset", func(t *testing.T) {
		spec := ds.Spec.Template.Spec
		if !spec.HostPID {
			t.Error("hostPID must be on: the kernel reports host pids")
		}
		if !slices.Contains(sas, spec.ServiceAccountName) {
			t.Errorf("service account %q is not in the manifests", spec.ServiceAccountName)
		}
		checkSelector(t, ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
		c := spec.Containers[0]
		caps := c.SecurityContext.Capabilities
		for _, want := range []corev1.Capability{"BPF", "PERFMON"} {
			if !slices.Contains(caps.Add, want) {
				t.Errorf("capability %s missing", want)
			}
		}
		if !slices.Contains(caps.Drop, "ALL") || (c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged) {
			t.Error("the agent must drop ALL and add only what it needs, not run privileged")
		}
		mounts := map[string]bool{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = true
		}
		for _, want := range []string{"/sys/fs/bpf", "/sys/fs/cgroup"} {
			if !mounts[want] {
				t.Errorf("mount %s missing", want)
			}
		}
		checkProbes(t, c, "/healthz", "/healthz")
		if !envFromField(c, "NODE_NAME", "spec.nodeName") {
			t.Error("NODE_NAME must come from spec.nodeName: the agent watches only its node's pods")
		}
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
			t.Error("the agent needs resource requests and limits")
		}
	})

	t.Run("agent rbac reads pods only", func(t *testing.T) {
		if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"pods"}) ||
			!slices.Equal(role.Rules[0].Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("rules = %+v", role.Rules)
		}
		if binding.RoleRef.Name != role.Name || binding.Subjects[0].Name != ds.Spec.Template.Spec.ServiceAccountName {
			t.Errorf("binding %+v does not tie the role to the agent's account", binding)
		}
	})

	t.Run("collector deployment and service", func(t *testing.T) {
		spec := dep.Spec.Template.Spec
		checkSelector(t, dep.Spec.Selector.MatchLabels, dep.Spec.Template.Labels)
		checkSelector(t, svc.Spec.Selector, dep.Spec.Template.Labels)
		c := spec.Containers[0]
		checkProbes(t, c, "/healthz", "/readyz")
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, p := range svc.Spec.Ports {
			if !ports[p.TargetPort.StrVal] {
				t.Errorf("service port %s targets %q, not a container port", p.Name, p.TargetPort.StrVal)
			}
		}
		if spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
			t.Error("the collector runs as non-root")
		}
		for _, e := range c.Env {
			if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && !slices.Contains(secrets, ref.SecretKeyRef.Name) {
				t.Errorf("env %s reads secret %q, not in the manifests", e.Name, ref.SecretKeyRef.Name)
			}
		}
	})

	t.Run("generated config files exist", func(t *testing.T) {
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.Files {
				path := f
				if _, p, ok := strings.Cut(f, "="); ok {
					path = p
				}
				if _, err := os.Stat(filepath.Clean(path)); err != nil {
					t.Errorf("configMap %s: %v", g.Name, err)
				}
			}
		}
	})
}

func checkSelector(t *testing.T, selector, labels map[string]string) {
	t.Helper()
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("selector %s=%s does not match labels %v", k, v, labels)
		}
	}
}

func checkProbes(t *testing.T, c corev1.Container, live, ready string) {
	t.Helper()
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.LivenessProbe, live}, {c.ReadinessProbe, ready}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || !ports[p.probe.HTTPGet.Port.StrVal] {
			t.Errorf("%s: probe %+v, want GET %s on a named container port", c.Name, p.probe, p.path)
		}
	}
}

func envFromField(c corev1.Container, name, field string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == field {
			return true
		}
	}
	return false
}
