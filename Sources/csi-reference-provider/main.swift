// Reference provider (being built).
print("csi-reference-provider: not built yet")
