// Reading the three proto oneofs out of protoc-c's case + anonymous union.
// A case this build does not know reads as nil.
internal import CProtobufC

extension CSI.PluginCapability.Kind {
  init?(_ c: UnsafePointer<Csi__V1__PluginCapability>) throws(ProtoFieldError) {
    switch c.pointee.type_case {
    case CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE:
      guard let service = c.pointee.service else { return nil }
      self = .service(try oneofMember("service") { () throws(ProtoFieldError) in try CSI.PluginCapability.Service(c: service) })
    case CSI__V1__PLUGIN_CAPABILITY__TYPE_VOLUME_EXPANSION:
      guard let expansion = c.pointee.volume_expansion else { return nil }
      self = .volumeExpansion(try oneofMember("volume_expansion") { () throws(ProtoFieldError) in try CSI.PluginCapability.VolumeExpansion(c: expansion) })
    default:
      return nil
    }
  }
}

extension CSI.VolumeCapability.AccessType {
  init?(_ c: UnsafePointer<Csi__V1__VolumeCapability>) throws(ProtoFieldError) {
    switch c.pointee.access_type_case {
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK:
      guard let block = c.pointee.block else { return nil }
      self = .block(try oneofMember("block") { () throws(ProtoFieldError) in try CSI.VolumeCapability.BlockVolume(c: block) })
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT:
      guard let mount = c.pointee.mount else { return nil }
      self = .mount(try oneofMember("mount") { () throws(ProtoFieldError) in try CSI.VolumeCapability.MountVolume(c: mount) })
    default:
      return nil
    }
  }
}

extension CSI.NodeServiceCapability.Kind {
  init?(_ c: UnsafePointer<Csi__V1__NodeServiceCapability>) throws(ProtoFieldError) {
    switch c.pointee.type_case {
    case CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC:
      guard let rpc = c.pointee.rpc else { return nil }
      self = .rpc(try oneofMember("rpc") { () throws(ProtoFieldError) in try CSI.NodeServiceCapability.RPC(c: rpc) })
    default:
      return nil
    }
  }
}

/// Reads a oneof's member message; an error in it names the member.
private func oneofMember<T>(_ field: String, _ read: () throws(ProtoFieldError) -> T) throws(ProtoFieldError) -> T {
  do {
    return try read()
  } catch {
    throw error.inside(field)
  }
}

extension UnsafeMutablePointer {
  /// Fills in a freshly built C struct and hands it back.
  func with(_ body: (Self) -> Void) -> Self {
    body(self)
    return self
  }
}
