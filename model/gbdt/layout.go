package gbdt

// LayoutOf returns the histogram layout of a model's features (Model.Features, as a
// coordinator sends them with its tasks), after checking them as NewBinner does.
func LayoutOf(fs []Feature) (*Binner, error) {
	if err := checkFeatures(fs); err != nil {
		return nil, err
	}
	return newBinner(fs), nil
}
