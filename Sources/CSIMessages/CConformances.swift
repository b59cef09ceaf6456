// protoc-c structs that the generic bridging helpers work with.
internal import CProtobufC

extension Csi__V1__CapacityRange: CZeroInitializable {}
extension Csi__V1__GetPluginCapabilitiesRequest: CZeroInitializable {}
extension Csi__V1__GetPluginCapabilitiesResponse: CZeroInitializable {}
extension Csi__V1__GetPluginInfoRequest: CZeroInitializable {}
extension Csi__V1__GetPluginInfoResponse: CZeroInitializable {}
extension Csi__V1__NodeExpandVolumeRequest: CZeroInitializable {}
extension Csi__V1__NodeExpandVolumeResponse: CZeroInitializable {}
extension Csi__V1__NodeGetCapabilitiesRequest: CZeroInitializable {}
extension Csi__V1__NodeGetCapabilitiesResponse: CZeroInitializable {}
extension Csi__V1__NodeGetInfoRequest: CZeroInitializable {}
extension Csi__V1__NodeGetInfoResponse: CZeroInitializable {}
extension Csi__V1__NodeGetVolumeStatsRequest: CZeroInitializable {}
extension Csi__V1__NodeGetVolumeStatsResponse: CZeroInitializable {}
extension Csi__V1__NodePublishVolumeRequest: CZeroInitializable {}
extension Csi__V1__NodePublishVolumeResponse: CZeroInitializable {}
extension Csi__V1__NodeServiceCapability: CZeroInitializable {}
extension Csi__V1__NodeServiceCapability__RPC: CZeroInitializable {}
extension Csi__V1__NodeStageVolumeRequest: CZeroInitializable {}
extension Csi__V1__NodeStageVolumeResponse: CZeroInitializable {}
extension Csi__V1__NodeUnpublishVolumeRequest: CZeroInitializable {}
extension Csi__V1__NodeUnpublishVolumeResponse: CZeroInitializable {}
extension Csi__V1__NodeUnstageVolumeRequest: CZeroInitializable {}
extension Csi__V1__NodeUnstageVolumeResponse: CZeroInitializable {}
extension Csi__V1__PluginCapability: CZeroInitializable {}
extension Csi__V1__PluginCapability__Service: CZeroInitializable {}
extension Csi__V1__PluginCapability__VolumeExpansion: CZeroInitializable {}
extension Csi__V1__ProbeRequest: CZeroInitializable {}
extension Csi__V1__ProbeResponse: CZeroInitializable {}
extension Csi__V1__Topology: CZeroInitializable {}
extension Csi__V1__VolumeCapability: CZeroInitializable {}
extension Csi__V1__VolumeCapability__AccessMode: CZeroInitializable {}
extension Csi__V1__VolumeCapability__BlockVolume: CZeroInitializable {}
extension Csi__V1__VolumeCapability__MountVolume: CZeroInitializable {}
extension Csi__V1__VolumeCondition: CZeroInitializable {}
extension Csi__V1__VolumeUsage: CZeroInitializable {}
extension V1alpha1__Error: CZeroInitializable {}
extension V1alpha1__File: CZeroInitializable {}
extension V1alpha1__MountRequest: CZeroInitializable {}
extension V1alpha1__MountResponse: CZeroInitializable {}
extension V1alpha1__ObjectVersion: CZeroInitializable {}
extension V1alpha1__VersionRequest: CZeroInitializable {}
extension V1alpha1__VersionResponse: CZeroInitializable {}
extension Google__Protobuf__BoolValue: CZeroInitializable {}

extension Csi__V1__GetPluginInfoResponse__ManifestEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__get_plugin_info_response__manifest_entry__init(entry) }
}
extension Csi__V1__Topology__SegmentsEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__topology__segments_entry__init(entry) }
}
extension Csi__V1__NodeStageVolumeRequest__PublishContextEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__node_stage_volume_request__publish_context_entry__init(entry) }
}
extension Csi__V1__NodeStageVolumeRequest__SecretsEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__node_stage_volume_request__secrets_entry__init(entry) }
}
extension Csi__V1__NodeStageVolumeRequest__VolumeContextEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__node_stage_volume_request__volume_context_entry__init(entry) }
}
extension Csi__V1__NodePublishVolumeRequest__PublishContextEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__node_publish_volume_request__publish_context_entry__init(entry) }
}
extension Csi__V1__NodePublishVolumeRequest__SecretsEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__node_publish_volume_request__secrets_entry__init(entry) }
}
extension Csi__V1__NodePublishVolumeRequest__VolumeContextEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__node_publish_volume_request__volume_context_entry__init(entry) }
}
extension Csi__V1__NodeExpandVolumeRequest__SecretsEntry: CMapEntry {
  static func cInit(_ entry: UnsafeMutablePointer<Self>) { csi__v1__node_expand_volume_request__secrets_entry__init(entry) }
}
