// Command server is the test image of providers/docker: a static HTTP
// server with a health endpoint, built by the tests with CGO_ENABLED=0 and
// put into an image FROM scratch.
//
// It listens on $PORT (default 8080), answers /healthz with "ok" (500 once
// /sick was requested) and / with its argv and $GREETING, and exits 0 on
// SIGTERM. `server -healthcheck URL`
// instead GETs URL and exits 0 on a 200 (an image HEALTHCHECK: FROM
// scratch has no curl).
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-healthcheck" {
		resp, err := http.Get(os.Args[2])
		if err != nil || resp.StatusCode != 200 {
			os.Exit(1)
		}
		os.Exit(0)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	var sick atomic.Bool
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/sick", func(w http.ResponseWriter, r *http.Request) { sick.Store(true); fmt.Fprintln(w, "now sick") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "args=%s greeting=%s\n", strings.Join(os.Args[1:], " "), os.Getenv("GREETING"))
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	fmt.Println("listening on", port, "args", os.Args[1:])
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("bye")
}
