// Package actions will hold the HTTP handlers Hasura calls for actions (POST /actions/{name}) and
// event triggers (POST /events/{trigger}): decode Hasura's payload, read the session from
// session_variables, call one domain function, write the output or a 4xx error in Hasura's shape.
// The team and billing work adds them; until then the service mounts no action or event route.
package actions
