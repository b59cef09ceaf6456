public import CurlHTTP

/// The Kubernetes client's HTTP: CurlHTTP on the driver's loop, HTTP/2 to the API server
/// where it offers it (every request and watch on one connection), TLS from the config.
public final class CurlKubeTransport: KubeTransport {
  let http: HTTPClient
  let server: String
  let tls: TLSConfiguration

  public init(config: KubeConfig, http: HTTPClient) {
    self.http = http
    server = config.server
    var tls = TLSConfiguration(trust: config.caPEM.map { .caPEM($0) } ?? .system, insecureSkipVerify: config.insecureSkipTLSVerify)
    if case .clientCertificate(let cert, let key) = config.credentials {
      tls.clientCertificatePEM = cert
      tls.clientKeyPEM = key
    }
    self.tls = tls
  }

  private func request(_ r: KubeHTTPRequest, streaming: Bool) -> HTTPRequest {
    var headers = HTTPHeaders()
    for h in r.headers { headers.add(h.name, h.value) }
    let timeouts =
      streaming
      ? HTTPTimeouts(connect: .seconds(10), total: nil, idle: r.timeout)
      : HTTPTimeouts(connect: .seconds(10), total: r.timeout)
    return HTTPRequest(
      method: HTTPMethod(rawValue: r.method), url: server + r.path, headers: headers, body: r.body, timeouts: timeouts, tls: tls,
      version: .http2)
  }

  public func send(_ r: KubeHTTPRequest) async throws -> KubeHTTPResponse {
    do {
      let response = try await http.execute(request(r, streaming: false))
      return KubeHTTPResponse(status: response.status, body: response.body)
    } catch let error as HTTPClientError {
      throw KubeTransportError("\(r.method) \(r.path.prefix { $0 != "?" }): \(error)")
    }
  }

  public func streamLines(_ r: KubeHTTPRequest) async throws -> KubeHTTPStream {
    let stream: HTTPLineStream
    do {
      stream = try await http.stream(request(r, streaming: true))
    } catch let error as HTTPClientError {
      throw KubeTransportError("\(r.method) \(r.path.prefix { $0 != "?" }): \(error)")
    }
    let lines = AsyncThrowingStream<[UInt8], any Error> { continuation in
      let task = Task {
        do {
          for try await line in stream { continuation.yield(line) }
          continuation.finish()
        } catch let error as HTTPClientError {
          continuation.finish(throwing: KubeTransportError("watch \(r.path.prefix { $0 != "?" }): \(error)"))
        } catch {
          continuation.finish(throwing: error)
        }
      }
      continuation.onTermination = { _ in
        task.cancel()
        stream.cancel()
      }
    }
    return KubeHTTPStream(status: stream.status, lines: lines)
  }
}
