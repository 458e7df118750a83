package slstest

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors returned by the data-management methods of Server.
var (
	ErrClosed           = errors.New("slstest: server closed")
	ErrProjectNotExist  = errors.New("slstest: project does not exist")
	ErrLogstoreNotExist = errors.New("slstest: logstore does not exist")
	ErrShardNotExist    = errors.New("slstest: shard does not exist")
	ErrAlreadyExist     = errors.New("slstest: already exists")
	ErrShardReadOnly    = errors.New("slstest: shard is read-only")
	ErrInvalidArgument  = errors.New("slstest: invalid argument")
	ErrInvalidBody      = errors.New("slstest: invalid log group body")
)

// apiError is an answer in the service's error format:
// HTTP status plus {"errorCode": ..., "errorMessage": ...}.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// Error codes the emulator answers with. Codes and statuses follow the SDK's
// error_code.go and the service's documentation where it names them.
const (
	codeUnauthorized      = "Unauthorized"
	codeSignatureNotMatch = "SignatureNotMatch"
	codeTimeTooSkewed     = "RequestTimeTooSkewed"
	codeProjectNotExist   = "ProjectNotExist"
	codeLogstoreNotExist  = "LogStoreNotExist"
	codeShardNotExist     = "ShardNotExist"
	codeInvalidCursor     = "InvalidCursor"
	codeParameterInvalid  = "ParameterInvalid"
	codePostBodyInvalid   = "PostBodyInvalid"
	codeUncompressError   = "PostBodyUncompressError"
	codeShardReadOnly     = "ShardReadOnly"
	codeGroupExist        = "ConsumerGroupAlreadyExist"
	codeGroupNotExist     = "ConsumerGroupNotExist"
	codeConsumerNotExist  = "ConsumerNotExist"
	codeConsumerNotMatch  = "ConsumerNotMatch"
	codeBadCheckpoint     = "InvalidShardCheckPoint"
	codeJSONInfoInvalid   = "JsonInfoInvalid"
	codeLogstoreExist     = "LogStoreAlreadyExist"
	codeNotSupported      = "NotSupported"
	codeInternal          = "InternalServerError"
	codeServerBusy        = "ServerBusy"
	codeReadQuota         = "ReadQuotaExceed"
	codeWriteQuota        = "WriteQuotaExceed"
	codeInvalidQuery      = "InvalidQueryString"
)

// toAPIError maps a data-layer error to the service's answer.
func toAPIError(err error, what string) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, ErrProjectNotExist):
		return errf(http.StatusNotFound, codeProjectNotExist, "The Project does not exist : %s", what)
	case errors.Is(err, ErrLogstoreNotExist):
		return errf(http.StatusNotFound, codeLogstoreNotExist, "logstore %s does not exist", what)
	case errors.Is(err, ErrShardNotExist):
		return errf(http.StatusNotFound, codeShardNotExist, "shard %s does not exist", what)
	case errors.Is(err, ErrShardReadOnly):
		return errf(http.StatusBadRequest, codeShardReadOnly, "shard %s is read only", what)
	case errors.Is(err, ErrAlreadyExist):
		return errf(http.StatusBadRequest, codeLogstoreExist, "%s already exists", what)
	case errors.Is(err, ErrInvalidBody):
		return errf(http.StatusBadRequest, codePostBodyInvalid, "%v", err)
	case errors.Is(err, ErrInvalidArgument):
		return errf(http.StatusBadRequest, codeParameterInvalid, "%v", err)
	default:
		return errf(http.StatusInternalServerError, codeInternal, "%v", err)
	}
}
