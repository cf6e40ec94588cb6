package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/export"
)

// stubExports answers the route as the export service would, from fixed outcomes: the route's
// translation of them is what is tested here (internal/postgres tests the service).
type stubExports struct {
	openErr     error
	downloadErr error
	body        string // written before downloadErr
	slow        time.Duration
}

func (s *stubExports) Open(ctx context.Context, id, expires, signature string) (export.Export, error) {
	return export.Export{ID: id, TenantID: "t1", UserID: "u1"}, s.openErr
}

func (s *stubExports) Download(ctx context.Context, e export.Export, start func() (io.Writer, error)) error {
	if s.body == "" {
		return s.downloadErr
	}
	w, err := start()
	if err != nil {
		return err
	}
	for _, chunk := range strings.SplitAfter(s.body, ",") {
		if _, err := w.Write([]byte(chunk)); err != nil {
			return err
		}
		time.Sleep(s.slow)
	}
	return s.downloadErr
}

func TestExportDownloadRoute(t *testing.T) {
	t.Parallel()
	const signature = "c2VjcmV0LXNpZ25hdHVyZQ"
	get := func(t *testing.T, ex *stubExports, writeTimeout time.Duration) (status int, hdr http.Header, body, log string, readErr error) {
		t.Helper()
		sink := &syncBuffer{}
		s := &Server{Export: &ExportDownload{Exports: ex}, Metrics: NewMetrics(nil), Log: zerolog.New(sink)}
		ts := httptest.NewUnstartedServer(s.Handler())
		ts.Config.WriteTimeout = writeTimeout
		ts.Start()
		t.Cleanup(ts.Close)
		// The request log is written after the answer (an interrupted archive logs that instead):
		// wait for its line.
		logged := func() string {
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				l := sink.String()
				if strings.Contains(l, `"route":`) || strings.Contains(l, `"export interrupted"`) || time.Now().After(deadline) {
					return l
				}
			}
		}
		// No shared secret: a browser follows the link.
		res, err := http.Get(ts.URL + "/exports/e1?expires=1700000000&signature=" + signature)
		if err != nil { // the connection closed before any answer
			return 0, nil, "", logged(), err
		}
		defer res.Body.Close()
		b, readErr := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, string(b), logged(), readErr
	}
	for _, tc := range []struct {
		name   string
		ex     *stubExports
		status int
		code   string
	}{
		{"altered link", &stubExports{openErr: tenantkit.Errorf(export.LinkInvalid, "no")}, 404, export.LinkInvalid},
		{"used link", &stubExports{openErr: tenantkit.Errorf(export.LinkUsed, "no")}, 410, export.LinkUsed},
		{"expired link", &stubExports{openErr: tenantkit.Errorf(export.LinkExpired, "no")}, 410, export.LinkExpired},
		{"no longer an owner", &stubExports{downloadErr: tenantkit.Errorf(tenantkit.Forbidden, "no")}, 403, tenantkit.Forbidden},
		{"busy", &stubExports{downloadErr: tenantkit.Errorf(tenantkit.Unavailable, "later")}, 503, tenantkit.Unavailable},
		{"a bug", &stubExports{downloadErr: errors.New("boom")}, 500, tenantkit.Internal},
	} {
		status, hdr, body, log, _ := get(t, tc.ex, 0)
		if status != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) || hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %s", tc.name, status, body)
		}
		if tc.code == tenantkit.Unavailable && hdr.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tc.name)
		}
		if strings.Contains(log, signature) || !strings.Contains(log, `"route":"/exports/e1"`) {
			t.Errorf("%s: request log %s (must not hold the signature)", tc.name, log)
		}
	}

	// A whole archive: 200, an attachment, no caching, no referrer.
	status, hdr, body, _, err := get(t, &stubExports{body: `{"a":1,"b":2}`}, 0)
	if status != 200 || err != nil || body != `{"a":1,"b":2}` || !strings.HasPrefix(hdr.Get("Content-Disposition"), "attachment;") ||
		hdr.Get("Referrer-Policy") != "no-referrer" || hdr.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("archive: %d %v %q %v", status, hdr, body, err)
	}
	// An archive cut short (the database went away mid-stream): the transfer fails rather than
	// ending cleanly on half an archive.
	_, _, body, log, err := get(t, &stubExports{body: `{"a":1,"b":`, downloadErr: errors.New("connection reset")}, 0)
	if err == nil {
		t.Errorf("an interrupted archive read as whole: %q", body)
	}
	if !strings.Contains(log, "export interrupted") {
		t.Errorf("log %s", log)
	}
	// Each write pushes the deadline on: a stream longer than the server's WriteTimeout completes.
	long := strings.Repeat(`"x",`, 30) + `"end"`
	_, _, body, _, err = get(t, &stubExports{body: long, slow: 10 * time.Millisecond}, 100*time.Millisecond)
	if err != nil || body != long {
		t.Errorf("a stream longer than WriteTimeout: %d bytes, %v", len(body), err)
	}
}
