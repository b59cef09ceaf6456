import CLinux
public import Telemetry
public import UVRuntime

/// What `/healthz` and `/readyz` answer, and the HTTP routes that serve them
/// next to `/metrics`.
public final class DriverHealth: Sendable {
  let endpoint: Endpoint
  /// What the Identity service's Probe answers too: shutdown, loop stalls, the class cache.
  let readiness: Readiness
  let providers: ProviderConnections
  let metrics: DriverMetrics
  /// Each provider's Version call gets this long (kubelet's probe allows a few seconds in all).
  let providerTimeout: Duration
  private let listening = Locked(false)

  public init(
    endpoint: Endpoint, readiness: Readiness, providers: ProviderConnections, metrics: DriverMetrics,
    providerTimeout: Duration = .seconds(2)
  ) {
    self.endpoint = endpoint
    self.readiness = readiness
    self.providers = providers
    self.metrics = metrics
    self.providerTimeout = providerTimeout
  }

  func csiServing() { listening.withLock { $0 = true } }

  /// Ready when the driver is (what Probe answers: not shutting down, the loop
  /// not stalled, the SecretProviderClass cache synced in cluster mode), the
  /// CSI socket is served, and every provider that has answered before answers
  /// Version now. A provider that never answered (a class naming a provider
  /// that is not installed) fails those publishes, not the whole node. The
  /// report has one line per check.
  public func readinessReport() async -> (ready: Bool, report: String) {
    var lines: [String] = []
    var ready = true
    func check(_ ok: Bool, _ line: String) {
      ready = ready && ok
      lines.append((ok ? "[+] " : "[-] ") + line)
    }
    if let reason = readiness.notReady {
      check(false, "driver: \(reason)")
    } else {
      check(true, "driver: ready")
    }
    if !listening.withLock({ $0 }) {
      check(false, "csi: the CSI endpoint \(endpoint) is not served yet")
    } else if case .unix(let path) = endpoint, clinux_is_socket(path) != 1 {
      check(false, "csi: the CSI socket \(path) is gone; kubelet cannot reach the driver")
    } else {
      check(true, "csi: serving \(endpoint)")
    }
    let names = metrics.providersThatAnswered
    let results = await withTaskGroup(of: (String, String?).self) { group in
      for name in names {
        group.addTask { [providers, providerTimeout] in
          do {
            _ = try await providers.connection(for: name).version(timeout: providerTimeout)
            return (name, nil)
          } catch {
            return (name, "\(error)")
          }
        }
      }
      var all: [(String, String?)] = []
      for await r in group { all.append(r) }
      return all.sorted { $0.0 < $1.0 }
    }
    for (name, failure) in results {
      if let failure {
        check(false, "provider \"\(name)\": Version failed: \(failure)")
      } else {
        check(true, "provider \"\(name)\": answers Version")
      }
    }
    lines.append(ready ? "ready" : "not ready")
    return (ready, lines.joined(separator: "\n") + "\n")
  }

  /// `/metrics`, `/healthz` and `/readyz`.
  public func routes() -> [String: HTTPHandler] {
    let registry = metrics.registry
    return [
      "/metrics": { _ in HTTPResponse(status: 200, contentType: MetricsRegistry.contentType, body: registry.render()) },
      // The handler runs on the driver's loop: answering proves the loop turns.
      "/healthz": { _ in .text(200, "ok") },
      "/readyz": { [self] _ in
        let (ready, report) = await readinessReport()
        return .text(ready ? 200 : 503, report)
      },
    ]
  }
}
