(call_expression function: (identifier) @call)
(call_expression function: (qualified_identifier scope: (_) @qualifier name: (identifier) @call))
(call_expression function: (field_expression argument: (_) @qualifier field: (field_identifier) @call))
(call_expression function: (template_function name: (identifier) @call))
(call_expression function: (qualified_identifier scope: (_) @qualifier name: (template_function name: (identifier) @call)))
(qualified_identifier scope: (namespace_identifier) @type)
(type_identifier) @type
