// Command httpd is a tiny HTTP server for the engine's health-check tests:
// GET /healthz answers 200, or 503 while the file named by -sick exists.
// It listens on -addr (127.0.0.1 only) after -delay, and exits on SIGTERM.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	sick := flag.String("sick", "", "answer 503 while this file exists")
	delay := flag.Duration("delay", 0, "wait this long before listening")
	flag.Parse()
	time.Sleep(*delay)
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if *sick != "" {
			if _, err := os.Stat(*sick); err == nil {
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
