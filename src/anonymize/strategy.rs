//! The strategies a rule may name, parsed and displayed.
