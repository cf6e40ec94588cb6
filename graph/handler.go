package graph

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/rs/zerolog"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tenantkit/tenantkit"
)

// NewHandler returns the remote-schema endpoint: POST only (Hasura's transport), introspection on
// (Hasura reads the schema through it), and errors carrying tenantkit's code in extensions.code.
// Uncoded errors are logged in full and shown as "internal error".
func NewHandler(r *Resolver) http.Handler {
	srv := handler.New(NewExecutableSchema(Config{Resolvers: r}))
	srv.AddTransport(transport.POST{})
	srv.Use(extension.Introspection{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.SetErrorPresenter(presentError)
	srv.SetRecoverFunc(func(ctx context.Context, v any) error {
		zerolog.Ctx(ctx).Error().Interface("panic", v).Msg("graphql resolver panicked")
		return errors.New("internal error")
	})
	return jsonOnly(srv)
}

// jsonOnly answers a request whose body is not declared application/json (Hasura always sends
// JSON) with a GraphQL error coded invalid, where gqlgen would answer "transport not supported"
// without a code.
func jsonOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"data": nil, "errors": []any{map[string]any{
				"message": "Content-Type must be application/json", "extensions": map[string]string{"code": tenantkit.Invalid},
			}}})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func presentError(ctx context.Context, err error) *gqlerror.Error {
	gerr := graphql.DefaultErrorPresenter(ctx, err)
	if gerr.Extensions == nil {
		gerr.Extensions = map[string]any{}
	}
	var te *tenantkit.Error
	var ge *gqlerror.Error
	switch {
	case errors.As(err, &te):
		gerr.Message = te.Message
		gerr.Extensions["code"] = te.Code
	case errors.As(err, &ge) && ge.Err == nil:
		// gqlgen's own parse and validation errors: safe to show as they are
		if _, ok := gerr.Extensions["code"]; !ok {
			gerr.Extensions["code"] = tenantkit.Invalid
		}
	default:
		zerolog.Ctx(ctx).Error().Err(err).Msg("graphql internal error")
		gerr.Message = tenantkit.ErrorMessage(err)
		gerr.Extensions["code"] = tenantkit.Internal
	}
	return gerr
}
