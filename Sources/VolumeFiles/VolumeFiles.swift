// Volume contents on disk. (Being built: path rules, atomic writer, tmpfs.)
