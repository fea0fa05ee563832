package metadata

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// resync is how often the informer replays its cache; events keep it
// current in between.
const resync = 10 * time.Minute

const byUID = "uid"

// Pod is what an exchange records of its pod.
type Pod struct {
	Name, Namespace, UID string
	Labels               map[string]string
}

// PodIndex follows the pods of one node through the Kubernetes API.
type PodIndex struct {
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
}

// NewPodIndex watches the pods scheduled on node. Only this node's pods are
// listed and kept, so the agent's memory does not grow with the cluster.
func NewPodIndex(cs kubernetes.Interface, node string) (*PodIndex, error) {
	if node == "" {
		return nil, errors.New("pod index: node name is empty")
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, resync, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}))
	inf := f.Core().V1().Pods().Informer()
	if err := inf.AddIndexers(cache.Indexers{byUID: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok {
			return []string{string(p.UID)}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("pod index: %w", err)
	}
	// The cache keeps only what exchanges record, not whole pod objects.
	if err := inf.SetTransform(trim); err != nil {
		return nil, fmt.Errorf("pod index: %w", err)
	}
	return &PodIndex{factory: f, informer: inf}, nil
}

// trim keeps the fields of a pod that Lookup reads.
func trim(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // tombstones pass through
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID,
		Labels: p.Labels, ResourceVersion: p.ResourceVersion}}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, c := range list {
			out.Status.ContainerStatuses = append(out.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, ContainerID: c.ContainerID})
		}
	}
	return out, nil
}

// Start starts watching and waits until the first list is in the cache or
// ctx ends. The watch stops when ctx ends.
func (x *PodIndex) Start(ctx context.Context) error {
	x.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), x.informer.HasSynced) {
		return fmt.Errorf("pod index: sync: %w", ctx.Err())
	}
	return nil
}

// Lookup returns the pod with the given UID, with the name of the container
// containerID when it is one of the pod's.
func (x *PodIndex) Lookup(uid, containerID string) (pod Pod, container string, ok bool) {
	objs, err := x.informer.GetIndexer().ByIndex(byUID, uid)
	if err != nil || len(objs) == 0 {
		return Pod{}, "", false
	}
	p := objs[0].(*corev1.Pod)
	for _, c := range p.Status.ContainerStatuses {
		if _, id, _ := strings.Cut(c.ContainerID, "://"); id != "" && id == containerID {
			container = c.Name
		}
	}
	return Pod{Name: p.Name, Namespace: p.Namespace, UID: string(p.UID), Labels: p.Labels}, container, true
}
