'use strict';
/**
 * What a call that did not produce a result throws. `code` is the wire error code (docs/protocol.md §4), or
 * the application's code for `AppError`.
 */

class ZvsrError extends Error {
  constructor(code, message) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The cluster could not take the request (no primary reachable, or no quorum). It was NOT executed. */
class Unavailable extends ZvsrError {}

/** A bound on queued work was reached (at the proxy or the primary). It was NOT executed; retry later. */
class Busy extends ZvsrError {}

/** The cluster (or this library, before sending) refused the request as malformed. Not executed; never retried. */
class BadRequest extends ZvsrError {}

/**
 * No result within the call's timeout. The outcome is UNKNOWN: the request may or may not have been executed
 * (an attempt may have committed and only its answer was lost). `client.retryLast()` re-sends it with the
 * same numbers, which the cluster executes at most once; or read the state to find out.
 */
class Timeout extends ZvsrError {}

/**
 * The cluster no longer remembers this client's session (evicted after long idleness among many clients), so
 * it executed nothing for this call; an earlier attempt may have executed before that (outcome unknown, as
 * Timeout). Never retried: the client continues under a new client_id.
 */
class SessionExpired extends ZvsrError {}

/**
 * The application executed the request and answered `{error: code, message: text}`; `code` is the app's
 * (`bad_request`, `type_error`, `out_of_range`, `app_error`, `lease_limit`, …), or `unexpected_result` when the
 * result is not what the operation answers. `lease_not_found` is the subclass `LeaseNotFound`.
 */
class AppError extends ZvsrError {}

/**
 * The lease named is not live — it expired, was revoked, or never existed (the app's code `lease_not_found`):
 * whatever was attached to it is gone (keys deleted, locks released). An `AppError`.
 */
class LeaseNotFound extends AppError {}

/** App error codes with a class of their own (every other code is a plain AppError). */
const APP_ERRORS = { lease_not_found: LeaseNotFound };

/** The error for an app's error result. */
function appErrorFor(code, message) {
  const Kind = Object.hasOwn(APP_ERRORS, code) ? APP_ERRORS[code] : AppError;
  return new Kind(code, message);
}

const BY_CODE = {
  unavailable: Unavailable,
  busy: Busy,
  bad_request: BadRequest,
  timeout: Timeout,
  session_expired: SessionExpired,
};

/** The error for a wire error code (`view_change` never reaches a caller: it is retried, then `unavailable`). */
function errorFor(code, message) {
  const Kind = BY_CODE[code] ?? ZvsrError;
  return new Kind(code, message);
}

module.exports = {
  ZvsrError,
  Unavailable,
  Busy,
  BadRequest,
  Timeout,
  SessionExpired,
  AppError,
  LeaseNotFound,
  errorFor,
  appErrorFor,
};
