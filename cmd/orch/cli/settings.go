package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/knadh/koanf/parsers/toml"
	"github.com/knadh/koanf/providers/env"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/orch-dev/orch/spec"
	"github.com/spf13/pflag"
)

// Settings are orch's own settings: how orch runs, never what it runs
// (that is declared in HCL). Each key comes from the first of these that
// sets it:
//
//	a flag (--state-dir, --log-level, --parallelism, --agent-socket, --backend)
//	the environment (ORCH_STATE_DIR, ORCH_LOG_LEVEL, ORCH_PARALLELISM, ORCH_AGENT_SOCKET, ORCH_BACKEND)
//	the settings file (--settings FILE, else $XDG_CONFIG_HOME/orch/settings.toml,
//	  else ~/.config/orch/settings.toml)
//	its default
//
// ORCH_VAR_<name> variables are configuration variables, never settings.
// A Settings is immutable once loaded.
type Settings struct {
	// StateDir is where orch keeps state, logs and its lock; "" means the
	// configuration's own (orch { state_dir }, default <config dir>/.orch).
	// See StateDirFor.
	StateDir string
	// LogLevel is one of debug, info, warn, error.
	LogLevel string
	// Parallelism bounds how many actions run at once; at least 1.
	Parallelism int
	// AgentSocket is the path of the agent's unix socket; "" means
	// <state dir>/agent.sock. See AgentSocketFor.
	AgentSocket string
	// Backend says where the state lives, overriding the configuration's
	// orch { backend } block: "" (the block decides), "file" (the state
	// file), or etcd://HOST:PORT[,HOST:PORT...][/PREFIX][?lock_ttl=...]
	// (etcds:// for TLS). It was checked when loaded; see backendFor.
	Backend string
	// File is the settings file that was read; "" when there was none.
	File string

	sources map[string]string
}

// A settingKey is one key of Settings with where it may be set.
type settingKey struct {
	name, flag, env string
	def             string
	usage           string
}

var settingKeys = []settingKey{
	{name: "state_dir", flag: "state-dir", env: "ORCH_STATE_DIR", def: "",
		usage: "`DIR` of orch's state, logs and lock (default: the configuration's orch { state_dir }, else <config dir>/.orch)"},
	{name: "log_level", flag: "log-level", env: "ORCH_LOG_LEVEL", def: "info",
		usage: "`LEVEL` of logging: debug, info, warn or error"},
	{name: "parallelism", flag: "parallelism", env: "ORCH_PARALLELISM", def: "10",
		usage: "how many actions may run at once (`N` >= 1)"},
	{name: "agent_socket", flag: "agent-socket", env: "ORCH_AGENT_SOCKET", def: "",
		usage: "`PATH` of the agent's unix socket (default: <state dir>/agent.sock)"},
	{name: "backend", flag: "backend", env: envBackend, def: "",
		usage: "where the state lives, over the configuration's orch { backend }: `file`, or etcd://HOST:PORT[,HOST:PORT...][/PREFIX][?lock_ttl=10s&ca=FILE&cert=FILE&key=FILE] (etcds:// for TLS)"},
}

var logLevels = []string{"debug", "info", "warn", "error"}

// settingsFlag names the flag that chooses the settings file.
const settingsFlag = "settings"

// addSettingsFlags registers the settings flags on fs (the root's
// persistent flags). Their defaults are not registered as flag defaults:
// a flag only counts when it is given.
func addSettingsFlags(fs *pflag.FlagSet) {
	for _, k := range settingKeys {
		if k.name == "parallelism" {
			fs.Int(k.flag, 10, k.usage)
			continue
		}
		fs.String(k.flag, k.def, k.usage)
	}
	fs.String(settingsFlag, "", "read settings from this TOML `FILE`, which must exist (default: $XDG_CONFIG_HOME/orch/settings.toml, if it exists)")
}

// SettingsKeys lists the keys of Settings in the order orch shows them.
func SettingsKeys() []string {
	out := make([]string, len(settingKeys))
	for i, k := range settingKeys {
		out[i] = k.name
	}
	return out
}

// Value returns the value of key as shown by orch settings.
func (s *Settings) Value(key string) any {
	switch key {
	case "state_dir":
		return s.StateDir
	case "log_level":
		return s.LogLevel
	case "parallelism":
		return s.Parallelism
	case "agent_socket":
		return s.AgentSocket
	case "backend":
		return s.Backend
	}
	return nil
}

// Source says where key's value came from: "flag", "env ORCH_X",
// "file PATH" or "default".
func (s *Settings) Source(key string) string {
	if src, ok := s.sources[key]; ok {
		return src
	}
	return "default"
}

// StateDirFor returns the absolute state directory for cfg: the state_dir
// setting when set, else the configuration's project state_dir, both
// relative to cfg.Dir unless absolute.
func (s *Settings) StateDirFor(cfg *spec.Config) string {
	dir := s.StateDir
	if dir == "" {
		dir = cfg.Project.StateDir
	}
	if dir == "" {
		dir = ".orch"
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(cfg.Dir, dir)
	}
	return dir
}

// AgentSocketFor returns the agent socket path given the state directory.
func (s *Settings) AgentSocketFor(stateDir string) string {
	if s.AgentSocket != "" {
		return s.AgentSocket
	}
	return filepath.Join(stateDir, "agent.sock")
}

// DefaultSettingsFile returns the settings file read when --settings is not
// given: $XDG_CONFIG_HOME/orch/settings.toml, or ~/.config/orch/settings.toml
// when XDG_CONFIG_HOME is unset or empty; "" when neither can be known.
func DefaultSettingsFile() string {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "orch", "settings.toml")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".config", "orch", "settings.toml")
}

// LoadSettings loads the settings from the flags in fs (those given on the
// command line), the process environment and the settings file. Every
// problem is one error naming where the bad value was written.
func LoadSettings(fs *pflag.FlagSet) (*Settings, error) {
	// One koanf per layer, so that each key's source is known.
	path, explicit := "", false
	if f := fs.Lookup(settingsFlag); f != nil && f.Changed {
		path, explicit = f.Value.String(), true
		if path == "" {
			return nil, errors.New("--settings needs a file name")
		}
	} else {
		path = DefaultSettingsFile()
	}
	fileK, path, err := loadSettingsFile(path, explicit)
	if err != nil {
		return nil, err
	}

	envK := koanf.New(".")
	err = envK.Load(env.Provider("ORCH_", ".", func(name string) string {
		if strings.HasPrefix(name, "ORCH_VAR_") {
			return "" // a configuration variable
		}
		for _, k := range settingKeys {
			if k.env == name && os.Getenv(name) != "" {
				return k.name
			}
		}
		return ""
	}), nil)
	if err != nil {
		return nil, fmt.Errorf("reading settings from the environment: %w", err)
	}

	flagK := koanf.New(".")
	err = flagK.Load(posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		for _, k := range settingKeys {
			if k.flag == f.Name {
				return k.name, posflag.FlagVal(fs, f)
			}
		}
		return "", nil
	}), nil)
	if err != nil {
		return nil, fmt.Errorf("reading settings from flags: %w", err)
	}

	s := &Settings{File: path, sources: map[string]string{}}
	for _, k := range settingKeys {
		var (
			raw    any = k.def
			source     = "default"
		)
		switch {
		case flagK.Exists(k.name):
			raw, source = flagK.Get(k.name), "flag"
		case envK.Exists(k.name):
			raw, source = envK.Get(k.name), "env "+k.env
		case fileK != nil && fileK.Exists(k.name):
			raw, source = fileK.Get(k.name), "file "+path
		}
		if err := s.set(k, raw, source == "default" || strings.HasPrefix(source, "env ")); err != nil {
			var where string
			switch {
			case source == "flag":
				where = "--" + k.flag
			case source == "default":
				where = "the default"
			case strings.HasPrefix(source, "env "):
				where = "environment variable " + k.env
			default:
				where = "settings file " + path
			}
			return nil, fmt.Errorf("invalid %s in %s: %w", k.name, where, err)
		}
		if source != "default" {
			s.sources[k.name] = source
		}
	}
	return s, nil
}

// loadSettingsFile reads the TOML settings file at path. A missing file is
// no error unless it was named explicitly; path comes back "" then.
func loadSettingsFile(path string, explicit bool) (*koanf.Koanf, string, error) {
	if path == "" {
		return nil, "", nil
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		return nil, "", nil
	case err != nil:
		return nil, "", fmt.Errorf("settings file %s: %w", path, unwrapPathError(err))
	case st.IsDir():
		return nil, "", fmt.Errorf("settings file %s: is a directory", path)
	}
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), toml.Parser()); err != nil {
		return nil, "", fmt.Errorf("settings file %s: %w", path, err)
	}
	var unknown []string
	for _, key := range k.Keys() {
		if !slices.Contains(SettingsKeys(), key) {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		what := "an unknown key"
		if len(unknown) > 1 {
			what = "unknown keys"
		}
		return nil, "", fmt.Errorf("settings file %s has %s: %s; the keys are %s",
			path, what, strings.Join(unknown, ", "), strings.Join(SettingsKeys(), ", "))
	}
	return k, path, nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// set converts and checks one raw value (a TOML value, a typed flag value,
// or, when text is true, a string from the environment or a default) into
// s.
func (s *Settings) set(k settingKey, raw any, text bool) error {
	switch k.name {
	case "state_dir", "agent_socket":
		v, ok := raw.(string)
		if !ok {
			return fmt.Errorf("%v is not a string", raw)
		}
		if k.name == "state_dir" {
			s.StateDir = v
		} else {
			s.AgentSocket = v
		}
	case "log_level":
		v, ok := raw.(string)
		if !ok || !slices.Contains(logLevels, v) {
			return fmt.Errorf("%s is not a log level: use one of %s", quoteAny(raw), strings.Join(logLevels, ", "))
		}
		s.LogLevel = v
	case "parallelism":
		var n int64
		switch v := raw.(type) {
		case int:
			n = int64(v)
		case int64:
			n = v
		case string:
			if !text {
				return fmt.Errorf("%q is a string, not an integer: write it without quotes", v)
			}
			var err error
			if n, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
				return fmt.Errorf("%q is not an integer", v)
			}
		default:
			return fmt.Errorf("%s is not an integer", quoteAny(raw))
		}
		if n < 1 || n > 1<<20 {
			return fmt.Errorf("%d is out of range: use an integer from 1 to %d", n, 1<<20)
		}
		s.Parallelism = int(n)
	case "backend":
		v, ok := raw.(string)
		if !ok {
			return fmt.Errorf("%v is not a string", raw)
		}
		// The project's name is only the prefix's default: any will do
		// to check the syntax.
		if _, err := parseBackend(v, "project"); v != "" && err != nil {
			return err
		}
		s.Backend = v
	}
	return nil
}

func quoteAny(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}
