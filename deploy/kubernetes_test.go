package deploy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The parts of the Kubernetes objects the tests read.
type object struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`       // ConfigMap
	StringData map[string]string `yaml:"stringData"` // Secret
	Spec       spec              `yaml:"spec"`
	Resources  []string          `yaml:"resources"` // Kustomization
}

type meta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type spec struct {
	// StatefulSet
	ServiceName string `yaml:"serviceName"`
	Replicas    *int   `yaml:"replicas"`
	// {matchLabels: …} in a StatefulSet or PDB, the labels themselves in a
	// Service.
	Selector map[string]any `yaml:"selector"`
	Template struct {
		Metadata meta    `yaml:"metadata"`
		Spec     podSpec `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata meta `yaml:"metadata"`
		Spec     struct {
			AccessModes []string `yaml:"accessModes"`
			Resources   struct {
				Requests map[string]string `yaml:"requests"`
			} `yaml:"resources"`
		} `yaml:"spec"`
	} `yaml:"volumeClaimTemplates"`
	// Service
	ClusterIP string `yaml:"clusterIP"`
	Ports     []struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort any    `yaml:"targetPort"`
	} `yaml:"ports"`
	// PodDisruptionBudget
	MaxUnavailable             any    `yaml:"maxUnavailable"`
	MinAvailable               any    `yaml:"minAvailable"`
	UnhealthyPodEvictionPolicy string `yaml:"unhealthyPodEvictionPolicy"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
		FSGroup      *int  `yaml:"fsGroup"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// manifests parses every YAML document in kubernetes/, strictly: a field
// the structs above do not know is fine, but a syntax error or a document
// without kind fails.
func manifests(t *testing.T) map[string][]object {
	t.Helper()
	paths, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	byKind := map[string][]object{}
	for _, p := range paths {
		dec := yaml.NewDecoder(bytes.NewReader([]byte(readFile(t, p))))
		for i := 0; ; i++ {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", p, i, err)
			}
			if o.Kind == "" || o.APIVersion == "" {
				t.Fatalf("%s: document %d has no kind or apiVersion", p, i)
			}
			if o.Kind != "Kustomization" && o.Metadata.Name == "" {
				t.Fatalf("%s: %s without a name", p, o.Kind)
			}
			byKind[o.Kind] = append(byKind[o.Kind], o)
		}
	}
	return byKind
}

// selectorLabels: a selector's matchLabels, or a Service's flat selector.
func selectorLabels(sel map[string]any) map[string]string {
	if ml, ok := sel["matchLabels"].(map[string]any); ok {
		sel = ml
	}
	out := map[string]string{}
	for k, v := range sel {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func one(t *testing.T, m map[string][]object, kind string) object {
	t.Helper()
	if len(m[kind]) != 1 {
		t.Fatalf("deploy/kubernetes: %d %s objects, want 1", len(m[kind]), kind)
	}
	return m[kind][0]
}

// relayConfig is the ConfigMap's relay.yaml, decoded for the fields the
// manifests depend on.
type relayConfig struct {
	DataDir         string `yaml:"data_dir"`
	ShutdownTimeout string `yaml:"shutdown_timeout"`
	Metrics         struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
}

func configMapRelayYAML(t *testing.T, m map[string][]object) (string, relayConfig) {
	t.Helper()
	raw, ok := one(t, m, "ConfigMap").Data["relay.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no relay.yaml")
	}
	var rc relayConfig
	if err := yaml.Unmarshal([]byte(raw), &rc); err != nil {
		t.Fatalf("ConfigMap relay.yaml: %v", err)
	}
	return raw, rc
}

// k8sMetricsPort is the port of the ConfigMap's metrics.listen, checked
// against the code's default metrics address when the code has one.
func k8sMetricsPort(t *testing.T) string {
	t.Helper()
	_, rc := configMapRelayYAML(t, manifests(t))
	_, port, err := net.SplitHostPort(rc.Metrics.Listen)
	if err != nil {
		t.Fatalf("ConfigMap relay.yaml metrics.listen %q: %v (the probes need the metrics server)", rc.Metrics.Listen, err)
	}
	if name, def := loadCode(t).defaultMetricsListen(); name != "" {
		if _, defPort, err := net.SplitHostPort(def); err == nil && defPort != port {
			t.Errorf("ConfigMap metrics.listen port %s differs from the code's %s (%s)", port, name, def)
		}
	}
	return port
}

// TestKubernetesManifests checks the manifests against each other and
// against the code: probes on the paths the metrics server serves and on
// the port relay.yaml listens on; the grace period above shutdown_timeout;
// one PVC per replica mounted at data_dir; the config mounted where the
// relay is told to read it; the Secret the pod takes its environment from;
// the PDB and the Service selecting the pods; the Prometheus annotations.
func TestKubernetesManifests(t *testing.T) {
	m := manifests(t)
	c := loadCode(t)
	_, rc := configMapRelayYAML(t, m)
	port := k8sMetricsPort(t)
	portNum, _ := strconv.Atoi(port)

	ss := one(t, m, "StatefulSet")
	pod := ss.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("StatefulSet has %d containers, want 1", len(pod.Spec.Containers))
	}
	ctr := pod.Spec.Containers[0]

	// Selector and labels.
	for k, v := range selectorLabels(ss.Spec.Selector) {
		if pod.Metadata.Labels[k] != v {
			t.Errorf("StatefulSet selector %s=%s does not match the pod template's labels %v", k, v, pod.Metadata.Labels)
		}
	}
	selects := func(what string, sel map[string]string) {
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range sel {
			if pod.Metadata.Labels[k] != v {
				t.Errorf("%s selector %s=%s does not match the pods", what, k, v)
			}
		}
	}
	pdb := one(t, m, "PodDisruptionBudget")
	selects("PodDisruptionBudget", selectorLabels(pdb.Spec.Selector))
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
	// /readyz fails on every relay while the SIEM is down: the budget must
	// not then block node drains.
	if pdb.Spec.UnhealthyPodEvictionPolicy != "AlwaysAllow" {
		t.Errorf("PodDisruptionBudget unhealthyPodEvictionPolicy %q, want AlwaysAllow", pdb.Spec.UnhealthyPodEvictionPolicy)
	}

	// The spool: one PVC per replica, mounted at data_dir.
	if rc.DataDir == "" {
		t.Fatal("ConfigMap relay.yaml has no data_dir")
	}
	if len(ss.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("StatefulSet has %d volumeClaimTemplates, want 1 (the spool follows its replica)", len(ss.Spec.VolumeClaimTemplates))
	}
	vct := ss.Spec.VolumeClaimTemplates[0]
	if vct.Spec.Resources.Requests["storage"] == "" || !slices.Contains(vct.Spec.AccessModes, "ReadWriteOnce") {
		t.Errorf("volumeClaimTemplate %s: storage %q, access modes %v", vct.Metadata.Name, vct.Spec.Resources.Requests["storage"], vct.Spec.AccessModes)
	}
	mounts := map[string]string{}
	for _, vm := range ctr.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	if mounts[rc.DataDir] != vct.Metadata.Name {
		t.Errorf("data_dir %s is mounted from %q, want the claim template %q", rc.DataDir, mounts[rc.DataDir], vct.Metadata.Name)
	}

	// The config: the relay is told to read <mount>/relay.yaml, and that
	// mount is the ConfigMap.
	cm := one(t, m, "ConfigMap")
	cmdline := append(slices.Clone(ctr.Command), ctr.Args...)
	i := slices.Index(cmdline, "--config")
	if i < 0 || i+1 >= len(cmdline) || cmdline[0] != "run" {
		t.Fatalf("container args %v: want run --config <path>", cmdline)
	}
	cfgPath := cmdline[i+1]
	if cfgPath != "/etc/slsrelay/relay.yaml" {
		t.Errorf("config path %s, want /etc/slsrelay/relay.yaml (the image's)", cfgPath)
	}
	volName := mounts[filepath.Dir(cfgPath)]
	found := false
	for _, v := range pod.Spec.Volumes {
		if v.Name == volName && v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
			found = true
		}
	}
	if !found || filepath.Base(cfgPath) != "relay.yaml" {
		t.Errorf("%s is not the ConfigMap %s's relay.yaml (mount %q)", cfgPath, cm.Metadata.Name, volName)
	}

	// The Secret: the pod's environment, and it has every variable
	// relay.yaml references (TestKubernetesConfigValidates runs the check).
	sec := one(t, m, "Secret")
	if len(ctr.EnvFrom) != 1 || ctr.EnvFrom[0].SecretRef == nil || ctr.EnvFrom[0].SecretRef.Name != sec.Metadata.Name {
		t.Errorf("container envFrom does not take the Secret %s", sec.Metadata.Name)
	}

	// Ports and probes: the metrics port, the paths the code serves.
	var named string
	for _, p := range ctr.Ports {
		if p.ContainerPort == portNum {
			named = p.Name
		}
	}
	if named == "" {
		t.Errorf("no containerPort %d (metrics.listen) in %v", portNum, ctr.Ports)
	}
	checkProbe := func(kind string, p *probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing or not httpGet", kind)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s probe path %s, want %s", kind, p.HTTPGet.Path, path)
		}
		if !c.serves(p.HTTPGet.Path) {
			t.Errorf("%s probe path %s: cmd/slsrelay serves no such path", kind, p.HTTPGet.Path)
		}
		if p.HTTPGet.Port != named && p.HTTPGet.Port != portNum {
			t.Errorf("%s probe port %v, want %q or %d", kind, p.HTTPGet.Port, named, portNum)
		}
	}
	checkProbe("liveness", ctr.LivenessProbe, "/healthz")
	checkProbe("readiness", ctr.ReadinessProbe, "/readyz")

	// Prometheus annotations on the pods.
	ann := pod.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v: want prometheus.io/scrape \"true\", port %q, path /metrics", ann, port)
	}
	if !c.serves("/metrics") {
		t.Error("cmd/slsrelay serves no /metrics")
	}

	// The governing Service.
	svc := one(t, m, "Service")
	if ss.Spec.ServiceName != svc.Metadata.Name || svc.Spec.ClusterIP != "None" {
		t.Errorf("StatefulSet serviceName %q, Service %q clusterIP %q: want the headless Service", ss.Spec.ServiceName, svc.Metadata.Name, svc.Spec.ClusterIP)
	}
	selects("Service", selectorLabels(svc.Spec.Selector))
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != portNum || (svc.Spec.Ports[0].TargetPort != named && svc.Spec.Ports[0].TargetPort != portNum) {
		t.Errorf("Service ports %v: want %d to the metrics port", svc.Spec.Ports, portNum)
	}

	// Grace period above the shutdown timeout: the relay's configured one,
	// and the code's default.
	shutdown := c.duration(t, "DefaultShutdownTimeout")
	if rc.ShutdownTimeout != "" {
		d, err := time.ParseDuration(rc.ShutdownTimeout)
		if err != nil {
			t.Fatalf("ConfigMap shutdown_timeout %q: %v", rc.ShutdownTimeout, err)
		}
		shutdown = max(shutdown, d)
	}
	g := pod.Spec.TerminationGracePeriodSeconds
	if g == nil {
		t.Errorf("no terminationGracePeriodSeconds: want more than the shutdown timeout %v", shutdown)
	} else if time.Duration(*g)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %d: want more than the shutdown timeout %v", *g, shutdown)
	}

	// Non-root, as the image's USER, with the volume writable by it.
	sc := pod.Spec.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.FSGroup == nil {
		t.Errorf("pod securityContext: want runAsNonRoot, a non-zero runAsUser and an fsGroup")
	} else if df := readFile(t, "../Dockerfile"); !strings.Contains(df, "USER "+strconv.Itoa(*sc.RunAsUser)+":") {
		t.Errorf("runAsUser %d is not the Dockerfile's USER", *sc.RunAsUser)
	}
	if p := ctr.SecurityContext.AllowPrivilegeEscalation; p == nil || *p {
		t.Error("container securityContext: want allowPrivilegeEscalation: false")
	}

	// Resources: requests (scheduling) and a memory limit.
	if ctr.Resources.Requests["cpu"] == "" || ctr.Resources.Requests["memory"] == "" || ctr.Resources.Limits["memory"] == "" {
		t.Errorf("container resources %+v: want cpu and memory requests and a memory limit", ctr.Resources)
	}
}

// TestKubernetesKustomization: kustomization.yaml lists every manifest.
func TestKubernetesKustomization(t *testing.T) {
	k := one(t, manifests(t), "Kustomization")
	paths, _ := filepath.Glob("kubernetes/*.yaml")
	for _, p := range paths {
		if b := filepath.Base(p); b != "kustomization.yaml" && !slices.Contains(k.Resources, b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join("kubernetes", r)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
}

// TestKubernetesConfigValidates runs the relay's own `validate` on the
// ConfigMap's relay.yaml with the Secret's keys as the environment, as the
// pod would: the config is one the relay accepts and the Secret provides
// every ${VAR} it references.
func TestKubernetesConfigValidates(t *testing.T) {
	m := manifests(t)
	raw, _ := configMapRelayYAML(t, m)
	cfg := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(cfg, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(relayBin(t), "validate", "--config", cfg)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range one(t, m, "Secret").StringData {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("slsrelay validate on the ConfigMap's relay.yaml with the Secret's environment: %v\n%s", err, out)
	}
}
