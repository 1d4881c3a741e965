//go:build !wasip1

package guest

import (
	"fmt"
	"time"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Register makes m the module's hooks. Call it from an init function: a
// reactor's main function never runs. Outside wasip1 it does nothing.
func Register(m Module) {}

// Log writes msg at level into orch's log of the module; outside wasip1 it
// does nothing.
func Log(level Level, msg string) {}

// Now returns orch's clock; outside wasip1, time.Now.
func Now() time.Time { return time.Now() }

// Config returns the module's configuration as JSON.
func Config() ([]byte, error) { return nil, ErrNotHosted }

// Publish puts data on the event bus under topic.
func Publish(topic string, data []byte) error { return ErrNotHosted }

// Subscribe delivers to OnEvent every event whose topic matches pattern.
func Subscribe(pattern string) error { return ErrNotHosted }

// Get returns the value of key; ok is false when there is none.
func (kv) Get(key string) (value []byte, ok bool, err error) { return nil, false, ErrNotHosted }

// Put sets key to value.
func (kv) Put(key string, value []byte) error { return ErrNotHosted }

// Delete removes key; a missing key is not an error.
func (kv) Delete(key string) error { return ErrNotHosted }
