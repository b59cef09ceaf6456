/// Why a request failed. `code` is what callers branch on; `curlCodeName` and
/// `message` say what libcurl reported. Messages never hold a header, a body, or
/// the URL's user information or query.
public struct HTTPClientError: Error, CustomStringConvertible, Sendable {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
      case timedOut, connectFailed, tls, bodyTooLarge, invalidRequest, transport, shutdown
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// A connect, total or idle timeout passed.
    public static let timedOut = Code(.timedOut)
    /// The server could not be reached (name resolution, refused connection).
    public static let connectFailed = Code(.connectFailed)
    /// The TLS handshake failed: an untrusted or mismatched certificate, a bad client certificate.
    public static let tls = Code(.tls)
    /// The response body (or a streamed line) passed the request's limit.
    public static let bodyTooLarge = Code(.bodyTooLarge)
    /// The request could not be sent as given (a bad URL, a header with a line break).
    public static let invalidRequest = Code(.invalidRequest)
    /// The connection failed or the server broke the protocol mid-exchange.
    public static let transport = Code(.transport)
    /// The client was shut down.
    public static let shutdown = Code(.shutdown)

    public var description: String { base.rawValue }
  }

  public var code: Code
  /// libcurl's `CURLcode`, when the error came from libcurl.
  public var curlCode: Int32?
  public var message: String

  public init(_ code: Code, curlCode: Int32? = nil, _ message: String) {
    self.code = code
    self.curlCode = curlCode
    self.message = message
  }

  /// The name of `curlCode`, such as `CURLE_OPERATION_TIMEDOUT`.
  public var curlCodeName: String? {
    guard let curlCode else { return nil }
    let index = Int(curlCode)
    return Self.curlNames.indices.contains(index) ? "CURLE_" + Self.curlNames[index] : "CURLE_\(curlCode)"
  }

  public var description: String {
    if let name = curlCodeName { return "\(code) (\(name)): \(message)" }
    return "\(code): \(message)"
  }

  /// What a `CURLcode` means to callers.
  static func code(forCurl curl: Int32) -> Code {
    switch curlNames.indices.contains(Int(curl)) ? curlNames[Int(curl)] : "" {
    case "OPERATION_TIMEDOUT": .timedOut
    case "COULDNT_RESOLVE_HOST", "COULDNT_RESOLVE_PROXY", "COULDNT_CONNECT", "PROXY": .connectFailed
    case "SSL_CONNECT_ERROR", "SSL_CERTPROBLEM", "SSL_CIPHER", "PEER_FAILED_VERIFICATION", "SSL_CACERT_BADFILE",
      "SSL_ISSUER_ERROR", "SSL_PINNEDPUBKEYNOTMATCH", "SSL_INVALIDCERTSTATUS", "SSL_CLIENTCERT", "SSL_CRL_BADFILE",
      "USE_SSL_FAILED":
      .tls
    case "FILESIZE_EXCEEDED": .bodyTooLarge
    case "UNSUPPORTED_PROTOCOL", "URL_MALFORMAT", "BAD_FUNCTION_ARGUMENT", "UNKNOWN_OPTION", "NOT_BUILT_IN":
      .invalidRequest
    default: .transport
    }
  }

  /// CURLcode names in value order (libcurl 7.88), without the `CURLE_` prefix.
  private static let curlNames: [String] = [
    "OK", "UNSUPPORTED_PROTOCOL", "FAILED_INIT", "URL_MALFORMAT", "NOT_BUILT_IN", "COULDNT_RESOLVE_PROXY",
    "COULDNT_RESOLVE_HOST", "COULDNT_CONNECT", "WEIRD_SERVER_REPLY", "REMOTE_ACCESS_DENIED", "FTP_ACCEPT_FAILED", "FTP_WEIRD_PASS_REPLY",
    "FTP_ACCEPT_TIMEOUT", "FTP_WEIRD_PASV_REPLY", "FTP_WEIRD_227_FORMAT", "FTP_CANT_GET_HOST", "HTTP2", "FTP_COULDNT_SET_TYPE",
    "PARTIAL_FILE", "FTP_COULDNT_RETR_FILE", "OBSOLETE20", "QUOTE_ERROR", "HTTP_RETURNED_ERROR", "WRITE_ERROR",
    "OBSOLETE24", "UPLOAD_FAILED", "READ_ERROR", "OUT_OF_MEMORY", "OPERATION_TIMEDOUT", "OBSOLETE29",
    "FTP_PORT_FAILED", "FTP_COULDNT_USE_REST", "OBSOLETE32", "RANGE_ERROR", "HTTP_POST_ERROR", "SSL_CONNECT_ERROR",
    "BAD_DOWNLOAD_RESUME", "FILE_COULDNT_READ_FILE", "LDAP_CANNOT_BIND", "LDAP_SEARCH_FAILED", "OBSOLETE40", "FUNCTION_NOT_FOUND",
    "ABORTED_BY_CALLBACK", "BAD_FUNCTION_ARGUMENT", "OBSOLETE44", "INTERFACE_FAILED", "OBSOLETE46", "TOO_MANY_REDIRECTS",
    "UNKNOWN_OPTION", "SETOPT_OPTION_SYNTAX", "OBSOLETE50", "OBSOLETE51", "GOT_NOTHING", "SSL_ENGINE_NOTFOUND",
    "SSL_ENGINE_SETFAILED", "SEND_ERROR", "RECV_ERROR", "OBSOLETE57", "SSL_CERTPROBLEM", "SSL_CIPHER",
    "PEER_FAILED_VERIFICATION", "BAD_CONTENT_ENCODING", "OBSOLETE62", "FILESIZE_EXCEEDED", "USE_SSL_FAILED", "SEND_FAIL_REWIND",
    "SSL_ENGINE_INITFAILED", "LOGIN_DENIED", "TFTP_NOTFOUND", "TFTP_PERM", "REMOTE_DISK_FULL", "TFTP_ILLEGAL",
    "TFTP_UNKNOWNID", "REMOTE_FILE_EXISTS", "TFTP_NOSUCHUSER", "OBSOLETE75", "OBSOLETE76", "SSL_CACERT_BADFILE",
    "REMOTE_FILE_NOT_FOUND", "SSH", "SSL_SHUTDOWN_FAILED", "AGAIN", "SSL_CRL_BADFILE", "SSL_ISSUER_ERROR",
    "FTP_PRET_FAILED", "RTSP_CSEQ_ERROR", "RTSP_SESSION_ERROR", "FTP_BAD_FILE_LIST", "CHUNK_FAILED", "NO_CONNECTION_AVAILABLE",
    "SSL_PINNEDPUBKEYNOTMATCH", "SSL_INVALIDCERTSTATUS", "HTTP2_STREAM", "RECURSIVE_API_CALL", "AUTH_ERROR", "HTTP3",
    "QUIC_CONNECT_ERROR", "PROXY", "SSL_CLIENTCERT", "UNRECOVERABLE_POLL",
  ]
}
