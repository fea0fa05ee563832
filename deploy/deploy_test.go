// Package deploy holds the Kubernetes manifests and container files; this
// test renders them as kubectl apply -k does (kustomize's own library),
// decodes every object strictly into the Kubernetes API types, and checks
// that their parts point at each other: the secure default and the open
// overlay.
package deploy

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// objects are the rendered objects of one kustomization, by kind.
type objects struct {
	ds       *appsv1.DaemonSet
	dep      *appsv1.Deployment
	svc      *corev1.Service
	policies []*networkingv1.NetworkPolicy
	sas      []string
	secrets  []string
	configs  map[string]*corev1.ConfigMap
	role     *rbacv1.ClusterRole
	binding  *rbacv1.ClusterRoleBinding
}

// render builds the kustomization in dir and decodes its output, rejecting
// unknown fields.
func render(t *testing.T, dir string) objects {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	o := objects{configs: map[string]*corev1.ConfigMap{}}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := docs.Read()
		if err != nil {
			break
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", dir, err, doc)
		}
		switch v := obj.(type) {
		case *appsv1.DaemonSet:
			o.ds = v
		case *appsv1.Deployment:
			o.dep = v
		case *corev1.Service:
			o.svc = v
		case *networkingv1.NetworkPolicy:
			o.policies = append(o.policies, v)
		case *corev1.ServiceAccount:
			o.sas = append(o.sas, v.Name)
		case *corev1.Secret:
			o.secrets = append(o.secrets, v.Name)
		case *corev1.ConfigMap:
			o.configs[v.Name] = v
		case *rbacv1.ClusterRole:
			o.role = v
		case *rbacv1.ClusterRoleBinding:
			o.binding = v
		case *corev1.Namespace:
		default:
			t.Errorf("%s: unexpected %T", dir, obj)
		}
	}
	if o.ds == nil || o.dep == nil || o.svc == nil || o.role == nil || o.binding == nil {
		t.Fatalf("%s: missing objects: daemonset %v deployment %v service %v role %v binding %v", dir,
			o.ds != nil, o.dep != nil, o.svc != nil, o.role != nil, o.binding != nil)
	}
	return o
}

// TestManifests checks what both setups share: the agent's security
// context, RBAC, probes and the service's wiring.
func TestManifests(t *testing.T) {
	for _, dir := range []string{".", "overlays/open"} {
		t.Run(dir, func(t *testing.T) {
			checkCommon(t, render(t, dir))
		})
	}
}

func checkCommon(t *testing.T, o objects) {
	t.Run("agent daemonset", func(t *testing.T) {
		spec := o.ds.Spec.Template.Spec
		if !spec.HostPID {
			t.Error("hostPID must be on: the kernel reports host pids")
		}
		if !slices.Contains(o.sas, spec.ServiceAccountName) {
			t.Errorf("service account %q is not in the manifests", spec.ServiceAccountName)
		}
		checkSelector(t, o.ds.Spec.Selector.MatchLabels, o.ds.Spec.Template.Labels)
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
		checkVolumes(t, o, spec)
	})

	t.Run("agent rbac reads pods only", func(t *testing.T) {
		if len(o.role.Rules) != 1 || !slices.Equal(o.role.Rules[0].Resources, []string{"pods"}) ||
			!slices.Equal(o.role.Rules[0].Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("rules = %+v", o.role.Rules)
		}
		if o.binding.RoleRef.Name != o.role.Name || o.binding.Subjects[0].Name != o.ds.Spec.Template.Spec.ServiceAccountName {
			t.Errorf("binding %+v does not tie the role to the agent's account", o.binding)
		}
	})

	t.Run("collector deployment and service", func(t *testing.T) {
		spec := o.dep.Spec.Template.Spec
		checkSelector(t, o.dep.Spec.Selector.MatchLabels, o.dep.Spec.Template.Labels)
		checkSelector(t, o.svc.Spec.Selector, o.dep.Spec.Template.Labels)
		c := spec.Containers[0]
		checkProbes(t, c, "/healthz", "/readyz")
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, p := range o.svc.Spec.Ports {
			if !ports[p.TargetPort.StrVal] {
				t.Errorf("service port %s targets %q, not a container port", p.Name, p.TargetPort.StrVal)
			}
		}
		if spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
			t.Error("the collector runs as non-root")
		}
		for _, e := range c.Env {
			if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && !slices.Contains(o.secrets, ref.SecretKeyRef.Name) {
				t.Errorf("env %s reads secret %q, not in the manifests", e.Name, ref.SecretKeyRef.Name)
			}
		}
		// The sanitizer's rules file is in the mounted ConfigMap.
		dir, key, from := mounted(spec, c, flagValues(c.Args)["--sanitize-config"])
		if from == nil || from.ConfigMap == nil || o.configs[from.ConfigMap.Name] == nil || o.configs[from.ConfigMap.Name].Data[key] == "" {
			t.Errorf("--sanitize-config is not a key of a ConfigMap of the manifests (mount %q, key %q)", dir, key)
		}
		checkVolumes(t, o, spec)
	})

	t.Run("agent reaches the collector service", func(t *testing.T) {
		host, port, err := net.SplitHostPort(flagValues(o.ds.Spec.Template.Spec.Containers[0].Args)["--collector"])
		if err != nil {
			t.Fatal(err)
		}
		if host != o.svc.Name+"."+o.svc.Namespace+".svc" || port != strconv.Itoa(int(servicePort(t, o.svc, "grpc"))) {
			t.Errorf("--collector %s:%s is not the service's gRPC port", host, port)
		}
	})
}

// The Secrets the default setup reads but does not hold: deploy/secrets.sh
// makes them (and cert-manager the TLS one).
const (
	agentTokens   = "reprise-agent-tokens"
	collectorAuth = "reprise-collector-auth"
	collectorTLS  = "reprise-collector-tls"
	tokenKey      = "reprise-token-key"
)

func TestSecureDefault(t *testing.T) {
	o := render(t, ".")
	script, err := os.ReadFile("secrets.sh")
	if err != nil {
		t.Fatal(err)
	}
	// secretKey checks that path, a flag's value, is key of the Secret
	// name, mounted in c.
	secretKey := func(t *testing.T, spec corev1.PodSpec, c corev1.Container, flag, name, key string) {
		t.Helper()
		value := flagValues(c.Args)[flag]
		_, got, from := mounted(spec, c, value)
		if from == nil || from.Secret == nil || from.Secret.SecretName != name || got != key {
			t.Errorf("%s=%s: want key %s of Secret %s mounted", flag, value, key, name)
		}
	}

	t.Run("collector", func(t *testing.T) {
		spec := o.dep.Spec.Template.Spec
		c := spec.Containers[0]
		flags := flagValues(c.Args)
		secretKey(t, spec, c, "--agents-file", collectorAuth, "agents.yaml")
		secretKey(t, spec, c, "--query-token-file", collectorAuth, "query-token")
		secretKey(t, spec, c, "--tls-cert", collectorTLS, "tls.crt")
		secretKey(t, spec, c, "--tls-key", collectorTLS, "tls.key")
		secretKey(t, spec, c, "--token-key-file", tokenKey, "token-key")
		for _, open := range []string{"--allow-unauthenticated", "--ingest-token-file"} {
			if _, ok := flags[open]; ok {
				t.Errorf("%s in the default setup", open)
			}
		}
		for _, key := range []string{"--from-file=agents.yaml=", "--from-file=query-token=", "apply " + collectorAuth, "apply " + collectorTLS, "apply " + tokenKey} {
			if !strings.Contains(string(script), key) {
				t.Errorf("secrets.sh does not make %q", key)
			}
		}
	})

	t.Run("agent", func(t *testing.T) {
		spec := o.ds.Spec.Template.Spec
		c := spec.Containers[0]
		flags := flagValues(c.Args)
		// Each agent reads the token named by its node, the id the
		// collector's agents file lists it under.
		if flags["--agent-id"] != "$(NODE_NAME)" {
			t.Errorf("--agent-id=%s, want $(NODE_NAME)", flags["--agent-id"])
		}
		secretKey(t, spec, c, "--token-file", agentTokens, "$(NODE_NAME)")
		secretKey(t, spec, c, "--tls-ca", collectorTLS, "ca.crt")
		if !strings.Contains(string(script), "apply "+agentTokens) {
			t.Errorf("secrets.sh does not make %s", agentTokens)
		}
	})

	t.Run("only agents reach the gRPC port", func(t *testing.T) {
		grpcPort := servicePort(t, o.svc, "grpc")
		var covered bool
		for _, p := range o.policies {
			if !selects(p.Spec.PodSelector.MatchLabels, o.dep.Spec.Template.Labels) || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				continue
			}
			covered = true
			for _, rule := range p.Spec.Ingress {
				if allowsPort(rule, o.dep, grpcPort) {
					if len(rule.From) != 1 || rule.From[0].PodSelector == nil || rule.From[0].NamespaceSelector != nil ||
						!selects(rule.From[0].PodSelector.MatchLabels, o.ds.Spec.Template.Labels) {
						t.Errorf("policy %s lets %+v reach the gRPC port, not only agent pods", p.Name, rule.From)
					}
				}
			}
		}
		if !covered {
			t.Error("no NetworkPolicy selects the collector's pods")
		}
	})
}

func TestOpenOverlay(t *testing.T) {
	o := render(t, "overlays/open")
	if len(o.policies) != 0 {
		t.Error("the open overlay keeps a NetworkPolicy")
	}
	flags := flagValues(o.dep.Spec.Template.Spec.Containers[0].Args)
	if _, ok := flags["--allow-unauthenticated"]; !ok {
		t.Error("the open collector must pass --allow-unauthenticated, or it refuses to start")
	}
	for _, f := range []string{"--agents-file", "--query-token-file", "--tls-cert"} {
		if _, ok := flags[f]; ok {
			t.Errorf("the open collector still has %s", f)
		}
	}
	for _, f := range []string{"--token-file", "--tls-ca"} {
		if _, ok := flagValues(o.ds.Spec.Template.Spec.Containers[0].Args)[f]; ok {
			t.Errorf("the open agent still has %s", f)
		}
	}
}

// checkVolumes checks that every mount names a volume of the pod, and that
// every Secret volume is one of the manifests or one secrets.sh makes.
func checkVolumes(t *testing.T, o objects, spec corev1.PodSpec) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
		if s := v.Secret; s != nil && !slices.Contains(o.secrets, s.SecretName) &&
			!slices.Contains([]string{agentTokens, collectorAuth, collectorTLS, tokenKey}, s.SecretName) {
			t.Errorf("volume %s reads Secret %s, neither in the manifests nor made by secrets.sh", v.Name, s.SecretName)
		}
	}
	for _, c := range spec.Containers {
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				t.Errorf("%s mounts %s, not a volume of the pod", c.Name, m.Name)
			}
		}
	}
}

// flagValues maps each --name=value argument to its value ("" without =).
func flagValues(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		name, value, _ := strings.Cut(a, "=")
		m[name] = value
	}
	return m
}

// mounted finds the volume c sees file through: the mount's path, the key
// of the file in the volume, and the volume's source (nil when none).
func mounted(spec corev1.PodSpec, c corev1.Container, file string) (string, string, *corev1.VolumeSource) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, m.MountPath+"/")
		if !ok || m.SubPath != "" {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			var items []corev1.KeyToPath
			switch {
			case v.Secret != nil:
				items = v.Secret.Items
			case v.ConfigMap != nil:
				items = v.ConfigMap.Items
			}
			for _, it := range items {
				if it.Path == rel {
					return m.MountPath, it.Key, &v.VolumeSource
				}
			}
			if len(items) > 0 || path.Base(rel) != rel {
				return m.MountPath, "", &v.VolumeSource
			}
			return m.MountPath, rel, &v.VolumeSource
		}
	}
	return "", "", nil
}

func servicePort(t *testing.T, svc *corev1.Service, name string) int32 {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p.Port
		}
	}
	t.Fatalf("service %s has no port %s", svc.Name, name)
	return 0
}

// allowsPort reports whether rule opens the container port the service's
// port number targets (rules name container ports or give numbers).
func allowsPort(rule networkingv1.NetworkPolicyIngressRule, dep *appsv1.Deployment, port int32) bool {
	if len(rule.Ports) == 0 {
		return true
	}
	for _, p := range rule.Ports {
		if p.Port == nil || p.Port.IntValue() == int(port) {
			return true
		}
		for _, cp := range dep.Spec.Template.Spec.Containers[0].Ports {
			if cp.Name == p.Port.StrVal && cp.ContainerPort == port {
				return true
			}
		}
	}
	return false
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkSelector(t *testing.T, selector, labels map[string]string) {
	t.Helper()
	if !selects(selector, labels) {
		t.Errorf("selector %v does not match labels %v", selector, labels)
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
