(call_expression function: (identifier) @call)
(call_expression function: (scoped_identifier path: (_) @qualifier name: (identifier) @call))
(call_expression function: (field_expression field: (field_identifier) @call))
(call_expression function: (generic_function function: (identifier) @call))
(call_expression function: (generic_function function: (scoped_identifier path: (_) @qualifier name: (identifier) @call)))
(macro_invocation macro: (identifier) @call)
(scoped_identifier path: (identifier) @type)
(type_identifier) @type
