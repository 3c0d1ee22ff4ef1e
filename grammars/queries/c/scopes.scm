(function_definition body: (compound_statement) @body) @scope.function
(struct_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @scope.class
(union_specifier name: (type_identifier) @name body: (field_declaration_list) @body) @scope.class
(enum_specifier name: (type_identifier) @name body: (enumerator_list) @body) @scope.class
