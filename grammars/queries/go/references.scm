(call_expression function: (identifier) @call)
(call_expression function: (selector_expression operand: (_) @qualifier field: (field_identifier) @call))
(qualified_type package: (package_identifier) @qualifier name: (type_identifier) @type)
(type_identifier) @type
