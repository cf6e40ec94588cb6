package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/export"
)

// Exports is what the download route needs (export.Service implements it).
type Exports interface {
	Open(ctx context.Context, id, expires, signature string) (export.Export, error)
	Download(ctx context.Context, e export.Export, start func() (io.Writer, error)) error
}

// ExportDownload serves GET /exports/{id}?expires=…&signature=…, the link exportTenant answers. A
// browser follows it directly: no Hasura secret; the signed, one-time link is the credential
// (internal/export). 200 with the archive as a JSON attachment; otherwise an error in Hasura's
// shape: 404 export_link_invalid, 410 export_link_expired or export_link_used, 403 forbidden (the
// owner is no longer one), 503 unavailable (with Retry-After; the link still works). The
// signature is in the query string, which the request log leaves out (it logs the path).
type ExportDownload struct {
	Exports Exports
}

// exportWriteTimeout is how long one write of the archive may take: each write pushes the
// connection's deadline on, so a large archive streams past the server's WriteTimeout while a
// client that stops reading is cut off.
const exportWriteTimeout = 30 * time.Second

func (h *ExportDownload) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	log := zerolog.Ctx(ctx)
	id := r.PathValue("id")
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("export_id", id) })
	q := r.URL.Query()
	e, err := h.Exports.Open(ctx, id, q.Get("expires"), q.Get("signature"))
	if err != nil {
		writeExportError(w, r, err)
		return
	}
	log.UpdateContext(func(c zerolog.Context) zerolog.Context {
		return c.Str("tenant_id", e.TenantID).Str("user_id", e.UserID)
	})
	started := false
	rc := http.NewResponseController(w)
	var size int64
	err = h.Exports.Download(ctx, e, func() (io.Writer, error) {
		hd := w.Header()
		hd.Set("Content-Type", "application/json; charset=utf-8")
		hd.Set("Content-Disposition", `attachment; filename="tenant-`+e.TenantID+`-export-`+e.ID+`.json"`)
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		w.WriteHeader(http.StatusOK)
		started = true
		return &deadlineWriter{w: w, rc: rc, n: &size}, nil
	})
	switch {
	case err == nil:
		log.Info().Int64("bytes", size).Msg("export downloaded")
	case !started:
		writeExportError(w, r, err)
	default:
		// The archive is cut short: the client must not take it for a whole one. Closing the
		// connection without the final chunk makes the transfer fail.
		log.Warn().Err(err).Int64("bytes", size).Msg("export interrupted")
		SetCode(ctx, "export_interrupted")
		panic(http.ErrAbortHandler)
	}
}

func writeExportError(w http.ResponseWriter, r *http.Request, err error) {
	code := tenantkit.ErrorCode(err)
	status := http.StatusInternalServerError
	switch code {
	case export.LinkInvalid:
		status = http.StatusNotFound
	case export.LinkExpired, export.LinkUsed:
		status = http.StatusGone
	case tenantkit.Forbidden:
		status = http.StatusForbidden
	case tenantkit.Unavailable:
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "30")
		zerolog.Ctx(r.Context()).Warn().Err(err).Msg("export unavailable")
	default:
		zerolog.Ctx(r.Context()).Error().Err(err).Msg("export failed")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	WriteError(w, r, status, code, tenantkit.ErrorMessage(err))
}

// deadlineWriter pushes the connection's write deadline on before every write.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
	n  *int64
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if err := d.rc.SetWriteDeadline(time.Now().Add(exportWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	n, err := d.w.Write(p)
	*d.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection through the request log's recorder.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
