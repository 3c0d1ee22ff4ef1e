(call_expression function: (identifier) @call)
(call_expression function: (member_expression object: (_) @qualifier property: (property_identifier) @call))
(new_expression constructor: (identifier) @type)
(new_expression constructor: (member_expression object: (_) @qualifier property: (property_identifier) @type))
(extends_clause value: (identifier) @type)
(type_identifier) @type
(nested_type_identifier module: (_) @qualifier name: (type_identifier) @type)
