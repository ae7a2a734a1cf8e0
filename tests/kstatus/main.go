// kstatus prints the verdict of sigs.k8s.io/cli-utils' status.Compute (what Flux's health checks
// and kpt/Config Sync use) for each object of a JSON list read from stdin: one JSON line
// {"name": ..., "status": ..., "message": ...} per object, in order.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	var raw []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&raw); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading a JSON list of objects from stdin:", err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for _, doc := range raw {
		// apimachinery's decoder, as the API machinery reads objects: whole numbers as int64
		obj := map[string]interface{}{}
		if err := utiljson.Unmarshal(doc, &obj); err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", err)
			os.Exit(2)
		}
		u := &unstructured.Unstructured{Object: obj}
		res, err := status.Compute(u)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", u.GetName(), err)
			os.Exit(1)
		}
		_ = out.Encode(map[string]string{
			"name":    u.GetName(),
			"status":  res.Status.String(),
			"message": res.Message,
		})
	}
}
