/**
 * Every error the manager answers with carries one of these codes. The exception filter maps each
 * code to an HTTP status through an exhaustive record (see error-status.ts): adding a code here
 * without mapping it there does not compile.
 */
export enum ErrorCode {
  ValidationFailed = 'validation_failed',
  MalformedJson = 'malformed_json',
  BadRequest = 'bad_request',
  Unauthenticated = 'unauthenticated',
  Forbidden = 'forbidden',
  NotFound = 'not_found',
  MethodNotAllowed = 'method_not_allowed',
  Conflict = 'conflict',
  PayloadTooLarge = 'payload_too_large',
  /** The request line or headers are larger than Node's limit (16 KB): refused before routing. */
  HeadersTooLarge = 'headers_too_large',
  UnsupportedMediaType = 'unsupported_media_type',
  RateLimited = 'rate_limited',
  /** The remote's agents could not be reached on any endpoint. */
  RemoteUnreachable = 'remote_unreachable',
  /** TLS with the remote failed: its certificate is not signed by the trusted CA, or it refused ours. */
  RemoteTlsFailed = 'remote_tls_failed',
  /** None of the certificates the remote presented matches the pinned fingerprint. */
  RemoteFingerprintMismatch = 'remote_fingerprint_mismatch',
  /** The remote did not accept a credential's API key, or the key lacks a permission. */
  RemoteCredentialRejected = 'remote_credential_rejected',
  /** The remote answered with an error of its own. */
  RemoteError = 'remote_error',
  /** A realm's directory or identity provider could not be reached or refused the manager's own credentials. */
  RealmUnavailable = 'realm_unavailable',
  /** An ACME order, account or revocation failed: the CA refused, or a challenge's answer could not be put in place. */
  CertificateOrderFailed = 'certificate_order_failed',
  NotReady = 'not_ready',
  /** The audit log could not be written, so a change was refused (fail closed). */
  AuditUnavailable = 'audit_unavailable',
  Internal = 'internal',
}
