package privacy

import "errors"

// ErrInvalidArgument is wrapped by every error about an argument outside its domain (a negative
// noise multiplier, a sampling rate above 1, an order below 1, ...). Arguments may come from
// configuration files or from tasks received over the network, so they are checked, not trusted.
var ErrInvalidArgument = errors.New("invalid argument")

// ErrBudgetExceeded is returned by [Accountant.ComposeWithin] when composing the mechanism would
// take epsilon above the budget; the accountant is then left unchanged.
var ErrBudgetExceeded = errors.New("privacy budget exceeded")

// ErrTargetUnreachable is returned by [SigmaFor] when no noise multiplier up to [MaxSigma]
// meets the target epsilon.
var ErrTargetUnreachable = errors.New("privacy target unreachable")

// ErrNumerical is wrapped when the accountant's series fails to behave (a log-space subtraction
// that would go negative, or a series that does not converge). It indicates inputs far outside
// the range the accountant was validated on.
var ErrNumerical = errors.New("numerical failure in the RDP accountant")
