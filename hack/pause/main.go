// Command pause holds a pod's namespaces open: it sleeps until SIGINT or SIGTERM and, as the
// pod's PID 1 when the pod shares its process namespace, reaps orphaned children. The same job as
// Kubernetes' pause.c, in Go so that it builds from the module proxy like the other binaries.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
