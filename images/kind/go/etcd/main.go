// The etcd server: the same program as etcd's own main package (go.etcd.io/etcd/v3),
// built from the published go.etcd.io/etcd/server/v3 module, whose root module is not
// on the Go module proxy at the version Kubernetes 1.34 pins (3.6.5).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
