package deploy

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// TestKubernetesSchema decodes every manifest strictly into the Kubernetes
// API's own types (k8s.io/api): a misspelt or misplaced field, a wrong type
// or an unparsable quantity fails here, not at kubectl apply. The
// kustomization is checked against the fields it uses.
func TestKubernetesSchema(t *testing.T) {
	paths, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	kinds := map[string]int{}
	for _, p := range paths {
		dec := yaml.NewDecoder(bytes.NewReader([]byte(readFile(t, p))))
		for i := 0; ; i++ {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: document %d: %v", p, i, err)
			}
			raw, err := yaml.Marshal(&doc)
			if err != nil {
				t.Fatal(err)
			}
			var head struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
			}
			if err := doc.Decode(&head); err != nil {
				t.Fatalf("%s: document %d: %v", p, i, err)
			}
			var obj any
			want := ""
			switch head.Kind {
			case "StatefulSet":
				obj, want = &appsv1.StatefulSet{}, "apps/v1"
			case "Service":
				obj, want = &corev1.Service{}, "v1"
			case "ConfigMap":
				obj, want = &corev1.ConfigMap{}, "v1"
			case "Secret":
				obj, want = &corev1.Secret{}, "v1"
			case "PodDisruptionBudget":
				obj, want = &policyv1.PodDisruptionBudget{}, "policy/v1"
			case "Kustomization":
				obj, want = &kustomization{}, "kustomize.config.k8s.io/v1beta1"
				d := yaml.NewDecoder(bytes.NewReader(raw))
				d.KnownFields(true)
				if err := d.Decode(obj); err != nil {
					t.Errorf("%s: Kustomization: %v", p, err)
				}
			default:
				t.Errorf("%s: document %d: kind %q is not one this test knows; add it", p, i, head.Kind)
				continue
			}
			if head.APIVersion != want {
				t.Errorf("%s: %s apiVersion %q, want %q", p, head.Kind, head.APIVersion, want)
			}
			if head.Kind != "Kustomization" {
				if err := sigsyaml.UnmarshalStrict(raw, obj); err != nil {
					t.Errorf("%s: %s does not match the Kubernetes API: %v", p, head.Kind, err)
				}
			}
			kinds[head.Kind]++
		}
	}
	for _, k := range []string{"StatefulSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "Kustomization"} {
		if kinds[k] != 1 {
			t.Errorf("%d %s objects, want 1", kinds[k], k)
		}
	}
}

// kustomization: the fields deploy/kubernetes/kustomization.yaml uses.
type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Resources  []string `yaml:"resources"`
	Labels     []struct {
		Pairs            map[string]string `yaml:"pairs"`
		IncludeSelectors bool              `yaml:"includeSelectors"`
		IncludeTemplates bool              `yaml:"includeTemplates"`
	} `yaml:"labels"`
}
