// csi-load: being built.
print("csi-load: not built yet")
