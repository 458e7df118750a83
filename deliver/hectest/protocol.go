package hectest

// Splunk HEC status codes and texts, as listed in Splunk's "Troubleshoot HTTP
// Event Collector" status-code table (the same table is reproduced in
// Splunk's own clients, e.g. splunk/cloudfwd's HttpCallbacksEventPost): the
// HTTP status each code comes with, and the text Splunk sends in
// {"text":...,"code":...}.
const (
	CodeSuccess                 = 0  // 200 Success
	CodeTokenDisabled           = 1  // 403 Token disabled
	CodeTokenRequired           = 2  // 401 Token is required
	CodeInvalidAuthorization    = 3  // 401 Invalid authorization
	CodeInvalidToken            = 4  // 403 Invalid token
	CodeNoData                  = 5  // 400 No data
	CodeInvalidDataFormat       = 6  // 400 Invalid data format
	CodeIncorrectIndex          = 7  // 400 Incorrect index
	CodeInternalError           = 8  // 500 Internal server error
	CodeServerBusy              = 9  // 503 Server is busy
	CodeChannelMissing          = 10 // 400 Data channel is missing
	CodeInvalidChannel          = 11 // 400 Invalid data channel
	CodeEventRequired           = 12 // 400 Event field is required
	CodeEventBlank              = 13 // 400 Event field cannot be blank
	CodeAckDisabled             = 14 // 400 ACK is disabled
	CodeIndexedFields           = 15 // 400 Error in handling indexed fields
	CodeQueryStringAuthDisabled = 16 // 400 Query string authorization is not enabled
	CodeHealthy                 = 17 // 200 HEC is healthy
	CodeUnhealthyQueues         = 18 // 503 HEC is unhealthy, queues are full
	CodeUnhealthyAck            = 19 // 503 HEC is unhealthy, ack service unavailable
	CodeUnhealthyQueuesAck      = 20 // 503 HEC is unhealthy, queues are full, ack service unavailable
)

// Texts maps each code above to Splunk's text.
var Texts = map[int]string{
	CodeSuccess:                 "Success",
	CodeTokenDisabled:           "Token disabled",
	CodeTokenRequired:           "Token is required",
	CodeInvalidAuthorization:    "Invalid authorization",
	CodeInvalidToken:            "Invalid token",
	CodeNoData:                  "No data",
	CodeInvalidDataFormat:       "Invalid data format",
	CodeIncorrectIndex:          "Incorrect index",
	CodeInternalError:           "Internal server error",
	CodeServerBusy:              "Server is busy",
	CodeChannelMissing:          "Data channel is missing",
	CodeInvalidChannel:          "Invalid data channel",
	CodeEventRequired:           "Event field is required",
	CodeEventBlank:              "Event field cannot be blank",
	CodeAckDisabled:             "ACK is disabled",
	CodeIndexedFields:           "Error in handling indexed fields",
	CodeQueryStringAuthDisabled: "Query string authorization is not enabled",
	CodeHealthy:                 "HEC is healthy",
	CodeUnhealthyQueues:         "HEC is unhealthy, queues are full",
	CodeUnhealthyAck:            "HEC is unhealthy, ack service unavailable",
	CodeUnhealthyQueuesAck:      "HEC is unhealthy, queues are full, ack service unavailable",
}

// Statuses maps each code above to its HTTP status.
var Statuses = map[int]int{
	CodeSuccess: 200, CodeTokenDisabled: 403, CodeTokenRequired: 401,
	CodeInvalidAuthorization: 401, CodeInvalidToken: 403, CodeNoData: 400,
	CodeInvalidDataFormat: 400, CodeIncorrectIndex: 400, CodeInternalError: 500,
	CodeServerBusy: 503, CodeChannelMissing: 400, CodeInvalidChannel: 400,
	CodeEventRequired: 400, CodeEventBlank: 400, CodeAckDisabled: 400,
	CodeIndexedFields: 400, CodeQueryStringAuthDisabled: 400, CodeHealthy: 200,
	CodeUnhealthyQueues: 503, CodeUnhealthyAck: 503, CodeUnhealthyQueuesAck: 503,
}

// Paths Splunk serves for JSON events and the others this receiver knows.
const (
	PathEvent      = "/services/collector/event"
	PathEvent10    = "/services/collector/event/1.0"
	PathCollector  = "/services/collector"
	PathAck        = "/services/collector/ack"
	PathHealth     = "/services/collector/health"
	PathHealth10   = "/services/collector/health/1.0"
	ChannelHeader  = "X-Splunk-Request-Channel"
	DefaultListen  = "127.0.0.1:0"
	ContentTypeHEC = "application/json; charset=UTF-8"
)

// DefaultMaxContentLength is Splunk's default [http_input]
// max_content_length in limits.conf since 6.5 (800 MiB; it was 1,000,000
// before). Tests that exercise the limit set a small Options.MaxContentLength.
const DefaultMaxContentLength = 838860800
