/// Messages of the Container Storage Interface v1 (`csi.v1`), Identity and
/// Node services.
public enum CSI {}

/// Messages of the Secrets Store provider API (`v1alpha1.CSIDriverProvider`).
public enum Provider {}
