enum ConvertPlaceholder {}
